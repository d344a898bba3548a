package amqp

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// The mapping between device messages on AMQP and the property bags of
// the MQTT topics (device-protocol §7.2, next-wave-protocols §2.4–§2.5),
// which is how the hub keeps a message whatever its transport.

// IDString renders a message or correlation id, which may be a string, a
// uuid, a number or binary.
func IDString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case UUID:
		h := hex.EncodeToString(x[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	case uint64:
		return strconv.FormatUint(x, 10)
	case []byte:
		return string(x)
	}
	return ""
}

// EventProperties maps an AMQP message's properties to the property bag
// of the MQTT topics, as the hub keeps them.
func EventProperties(m *Message) map[string]string {
	props := map[string]string{}
	if p := m.Properties; p != nil {
		for k, v := range map[string]string{"$.mid": IDString(p.MessageID), "$.cid": IDString(p.CorrelationID), "$.uid": string(p.UserID),
			"$.ct": string(p.ContentType), "$.ce": string(p.ContentEncoding)} {
			if v != "" {
				props[k] = v
			}
		}
	}
	if s := AsString(m.MessageAnnotations[Symbol("dt-subject")]); s != "" {
		props["$.sub"] = s
	}
	for k, v := range m.ApplicationProperties {
		name, ok := k.(string)
		if !ok {
			continue
		}
		switch name {
		case "iothub-creation-time-utc":
			props["$.ctime"] = fmt.Sprint(v)
		case "iothub-message-schema":
			props["$.schema"] = fmt.Sprint(v)
		default:
			props[name] = fmt.Sprint(v)
		}
	}
	return props
}

// String is the canonical 8-4-4-4-12 form of the uuid.
func (u UUID) String() string { return IDString(u) }

// ParseUUID reads the canonical form of a uuid.
func ParseUUID(s string) (UUID, bool) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	b, err := hex.DecodeString(s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	if err != nil {
		return u, false
	}
	copy(u[:], b)
	return u, true
}

// Event is the telemetry message of a device with the property bag of
// its MQTT topic: system properties in the properties section, the
// others as application properties, and to = the events address.
func Event(to string, props topic.Properties, body []byte) *Message {
	p := &Properties{To: to}
	app := map[any]any{}
	for _, prop := range props {
		v := ""
		if prop.Value != nil {
			v = *prop.Value
		}
		switch prop.Key {
		case topic.MessageID:
			p.MessageID = v
		case topic.CorrelationID:
			p.CorrelationID = v
		case topic.UserID:
			p.UserID = []byte(v)
		case topic.ContentType:
			p.ContentType = Symbol(v)
		case topic.ContentEncoding:
			p.ContentEncoding = Symbol(v)
		case topic.To:
		default:
			app[prop.Key] = v
		}
	}
	if body == nil {
		body = []byte{}
	}
	return &Message{Properties: p, ApplicationProperties: app, Data: [][]byte{body}}
}

// C2DProperties is the property bag of a cloud-to-device message as a
// device on MQTT sees it: its system properties, iothub-ack among them,
// and its application properties.
func C2DProperties(m *Message) topic.Properties {
	var bag topic.Properties
	if p := m.Properties; p != nil {
		for _, kv := range [][2]string{{topic.MessageID, IDString(p.MessageID)}, {topic.CorrelationID, IDString(p.CorrelationID)},
			{topic.UserID, string(p.UserID)}, {topic.To, p.To}, {topic.ContentType, string(p.ContentType)}, {topic.ContentEncoding, string(p.ContentEncoding)}} {
			if kv[1] != "" {
				bag = bag.Set(kv[0], kv[1])
			}
		}
		if !p.AbsoluteExpiryTime.IsZero() {
			bag = bag.Set(topic.Expiry, p.AbsoluteExpiryTime.UTC().Format(time.RFC3339Nano))
		}
	}
	var names []string
	for k := range m.ApplicationProperties {
		if name, ok := k.(string); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		bag = bag.Set(name, fmt.Sprint(m.ApplicationProperties[name]))
	}
	return bag
}
