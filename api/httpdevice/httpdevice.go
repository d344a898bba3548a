// Package httpdevice is the device side of IoT Hub's HTTPS API as the
// official device SDKs speak it (next-wave-protocols §3): the paths of
// telemetry and cloud-to-device messages, the iothub-* headers that carry
// a message's properties both ways, and the JSON batch of events. It maps
// them to and from the property bags of the MQTT topics (api/topic), so
// the hub sees one kind of message whatever the transport. No I/O.
package httpdevice

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// BatchContentType marks a body that is a JSON array of events.
const BatchContentType = "application/vnd.microsoft.iothub.json"

// MaxEventsSize bounds one request's events, single or batched, as on
// Azure (256 KB).
const MaxEventsSize = 256 * 1024

// Headers of a message's properties, and the query parameter of the
// lock timeout (C#).
const (
	AppPrefix       = "iothub-app-"
	MessageID       = "iothub-messageid"
	CorrelationID   = "iothub-correlationid"
	UserID          = "iothub-userid"
	To              = "iothub-to"
	Expiry          = "iothub-expiry"
	Ack             = "iothub-ack"
	ContentType     = "iothub-contenttype"
	ContentEncoding = "iothub-contentencoding"
	CreationTime    = "iothub-creationtimeutc"
	MessageSchema   = "iothub-messageschema"
	Subject         = "dt-subject"
	EnqueuedTime    = "iothub-enqueuedtime"
	DeliveryCount   = "iothub-deliverycount"
	SequenceNumber  = "iothub-sequencenumber"
	LockTimeout     = "iothub-messagelocktimeout"
)

// systemKeys maps the headers of system properties to the bag keys of an
// event (device-protocol §7.2); the others are not carried into the event.
var systemKeys = map[string]string{
	MessageID:       topic.MessageID,
	CorrelationID:   topic.CorrelationID,
	UserID:          topic.UserID,
	ContentType:     topic.ContentType,
	ContentEncoding: topic.ContentEncoding,
	CreationTime:    "$.ctime",
	MessageSchema:   "$.schema",
	Subject:         "$.sub",
}

// EventProperties turns the properties of an event sent over HTTPS,
// header names (any case) to values, into the event's property bag:
// system properties under their bag keys, iothub-app-{k} as k.
func EventProperties(headers map[string]string) map[string]string {
	out := map[string]string{}
	for name, v := range headers {
		name = strings.ToLower(name)
		if k, ok := strings.CutPrefix(name, AppPrefix); ok && k != "" {
			out[k] = v
		} else if k, ok := systemKeys[name]; ok {
			out[k] = v
		}
	}
	return out
}

// Event is one event of a request.
type Event struct {
	Body       []byte
	Properties map[string]string // as EventProperties returns them
}

// batchItem is an element of a batch as the SDKs send it: the body in
// base64, the properties under their header names.
type batchItem struct {
	Body       *string           `json:"body"`
	Properties map[string]string `json:"properties"`
}

// ParseBatch reads a batch body: a JSON array of {"body": base64,
// "properties": {header: value}}.
func ParseBatch(b []byte) ([]Event, error) {
	var items []batchItem
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("the batch is not a JSON array of events: %v", err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("the batch holds no event")
	}
	out := make([]Event, len(items))
	for i, it := range items {
		if it.Body == nil {
			return nil, fmt.Errorf("event %d of the batch has no body", i)
		}
		body, err := base64.StdEncoding.DecodeString(*it.Body)
		if err != nil {
			return nil, fmt.Errorf("the body of event %d is not base64: %v", i, err)
		}
		out[i] = Event{Body: body, Properties: EventProperties(it.Properties)}
	}
	return out, nil
}

// C2D is a cloud-to-device message as a device receives it over HTTPS.
type C2D struct {
	Lock            string
	MessageID       string
	To              string
	CorrelationID   string
	UserID          string
	Ack             string
	ContentType     string
	ContentEncoding string
	Expiry          time.Time // zero when the sender set none
	Enqueued        time.Time
	DeliveryCount   int
	SequenceNumber  int64
	Properties      map[string]string
}

// TimeFormat is how the headers write times.
const TimeFormat = "2006-01-02T15:04:05.0000000Z"

// Headers are the response headers of a received message: the quoted
// ETag the SDKs take the lock token from, the system properties, and the
// application properties as iothub-app-{k}, in a stable order.
func (m C2D) Headers() [][2]string {
	h := [][2]string{{"ETag", `"` + m.Lock + `"`}}
	add := func(name, v string) {
		if v != "" {
			h = append(h, [2]string{name, v})
		}
	}
	add(MessageID, m.MessageID)
	add(To, m.To)
	add(CorrelationID, m.CorrelationID)
	add(UserID, m.UserID)
	add(Ack, m.Ack)
	add(ContentType, m.ContentType)
	add(ContentEncoding, m.ContentEncoding)
	if !m.Expiry.IsZero() {
		add(Expiry, m.Expiry.UTC().Format(TimeFormat))
	}
	add(EnqueuedTime, m.Enqueued.UTC().Format(TimeFormat))
	add(DeliveryCount, strconv.Itoa(m.DeliveryCount))
	add(SequenceNumber, strconv.FormatInt(m.SequenceNumber, 10))
	keys := make([]string, 0, len(m.Properties))
	for k := range m.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(AppPrefix+k, m.Properties[k])
	}
	return h
}

// LockFromIfMatch is the lock token an If-Match header names: the SDKs
// send it quoted (C#) or not (Node).
func LockFromIfMatch(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v
}

// EventHeaders are the request headers of an event with the property bag
// of its MQTT topic, as the SDKs send them: system properties under
// their iothub-* names, the others as iothub-app-{k}.
func EventHeaders(props topic.Properties) [][2]string {
	var h [][2]string
	for _, p := range props {
		v := ""
		if p.Value != nil {
			v = *p.Value
		}
		name := ""
		for header, key := range systemKeys {
			if key == p.Key {
				name = header
			}
		}
		switch {
		case name != "":
		case strings.HasPrefix(p.Key, "$."):
			continue // a system property HTTPS does not carry
		default:
			name = AppPrefix + p.Key
		}
		h = append(h, [2]string{name, v})
	}
	return h
}

// ParseC2D reads a received message's headers (an http.Header, names in
// any case): its lock token from the quoted ETag, and its property bag as
// a device on MQTT sees it, iothub-ack included and the application
// properties without their prefix, in a stable order.
func ParseC2D(header map[string][]string) (lock string, props topic.Properties) {
	get := func(name string) string {
		for k, v := range header {
			if strings.EqualFold(k, name) && len(v) > 0 {
				return v[0]
			}
		}
		return ""
	}
	lock = LockFromIfMatch(get("ETag"))
	for _, kv := range [][2]string{{MessageID, topic.MessageID}, {CorrelationID, topic.CorrelationID}, {UserID, topic.UserID},
		{To, topic.To}, {ContentType, topic.ContentType}, {ContentEncoding, topic.ContentEncoding}, {Expiry, topic.Expiry}, {Ack, "iothub-ack"}} {
		if v := get(kv[0]); v != "" {
			props = props.Set(kv[1], v)
		}
	}
	var app []string
	for k := range header {
		if name := strings.ToLower(k); strings.HasPrefix(name, AppPrefix) && len(name) > len(AppPrefix) {
			app = append(app, k)
		}
	}
	sort.Strings(app)
	for _, k := range app {
		props = props.Set(strings.ToLower(k)[len(AppPrefix):], header[k][0])
	}
	return lock, props
}
