package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// The nodes an IoT Hub service client uses (service-api §8).
const (
	cbsNode      = "$cbs"                            // claims-based security: put-token
	c2dNode      = "/messages/devicebound"           // cloud-to-device messages
	feedbackNode = "/messages/serviceBound/feedback" // what became of them
	maxMessage   = hub.MaxC2DSize + 16*1024
)

// message is a decoded AMQP message: the sections the hub reads.
type message struct {
	props    []any       // the properties section, by position
	appProps map[any]any // application-properties
	data     []byte      // data sections, joined
	value    any         // an amqp-value section
}

// Message properties by position (AMQP 1.0 part 3, 3.2.4).
const (
	propMessageID       = 0
	propUserID          = 1
	propTo              = 2
	propReplyTo         = 4
	propCorrelationID   = 5
	propContentType     = 6
	propContentEncoding = 7
	propExpiry          = 8
)

func parseMessage(b []byte) (message, error) {
	var m message
	for len(b) > 0 {
		v, rest, err := wire.Decode(b)
		if err != nil {
			return m, err
		}
		b = rest
		d, ok := v.(*wire.Described)
		if !ok {
			return m, errors.New("a message section without a descriptor")
		}
		switch d.Code() {
		case descProperties:
			m.props, _ = d.Value.([]any)
		case descAppProperties:
			m.appProps, _ = d.Value.(map[any]any)
		case descData:
			data, _ := d.Value.([]byte)
			m.data = append(m.data, data...)
		case descValue:
			m.value = d.Value
		}
	}
	return m, nil
}

// idString renders a message or correlation id, which may be a string, a
// uuid, a number or binary.
func idString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case wire.UUID:
		h := hex.EncodeToString(x[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	case uint64:
		return strconv.FormatUint(x, 10)
	case []byte:
		return string(x)
	}
	return ""
}

// deliver handles a complete message the client sent on l and returns
// the outcome for its disposition.
func (c *conn) deliver(s *session, l *link, b []byte) *wire.Described {
	m, err := parseMessage(b)
	if err != nil {
		return rejected("amqp:decode-error", err.Error())
	}
	switch l.address {
	case cbsNode:
		return c.putToken(s, m)
	case c2dNode:
		if !c.authorized {
			return rejected("amqp:unauthorized-access", "put a service token on $cbs first")
		}
		return c.sendC2D(m)
	}
	return rejected("amqp:not-implemented", "no such node")
}

func accepted() *wire.Described { return perf(descAccepted) }

func rejected(condition, description string) *wire.Described {
	return perf(descRejected, amqpError(condition, description))
}

// putToken checks a service token (operation put-token) and answers on the
// client's $cbs receiving link, correlated by message id.
func (c *conn) putToken(s *session, m message) *wire.Described {
	op := wire.AsString(m.appProps["operation"])
	status, desc := 200, "OK"
	switch {
	case op != "put-token":
		status, desc = 400, fmt.Sprintf("unsupported operation %q", op)
	default:
		token, _ := m.value.(string)
		if err := c.s.hub.AuthorizeService(token, hub.ServiceConnect); err != nil {
			status, desc = 401, "Unauthorized"
			c.s.log.Info("amqp put-token refused", "remote", c.nc.RemoteAddr().String(), "reason", err.Error())
		} else {
			c.authorized = true
		}
	}
	reply, err := appendSections(nil,
		perf(descProperties, nil, nil, nil, nil, nil, wire.Field(m.props, propMessageID)),
		wire.Describe(descAppProperties, map[any]any{"status-code": int32(status), "status-description": desc}))
	if err != nil {
		return rejected("amqp:internal-error", err.Error())
	}
	for _, out := range s.links {
		if !out.receiving && out.address == cbsNode {
			if err := c.send(s, out, reply); err != nil {
				return rejected("amqp:internal-error", err.Error())
			}
			break
		}
	}
	return accepted()
}

func appendSections(b []byte, sections ...*wire.Described) ([]byte, error) {
	for _, sec := range sections {
		var err error
		if b, err = wire.Append(b, sec); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// sendC2D queues a cloud-to-device message addressed, in its to property,
// to /devices/{id}/messages/devicebound.
func (c *conn) sendC2D(m message) *wire.Described {
	to := wire.AsString(wire.Field(m.props, propTo))
	id, ok := strings.CutPrefix(to, "/devices/")
	if ok {
		id, ok = strings.CutSuffix(id, "/messages/devicebound")
	}
	if !ok || id == "" || strings.Contains(id, "/") {
		return rejected("amqp:invalid-field", fmt.Sprintf("the to property %q is not /devices/{deviceId}/messages/devicebound", to))
	}
	msg := hub.C2DMessage{
		Body:            m.data,
		MessageID:       idString(wire.Field(m.props, propMessageID)),
		CorrelationID:   idString(wire.Field(m.props, propCorrelationID)),
		ContentType:     wire.AsString(wire.Field(m.props, propContentType)),
		ContentEncoding: wire.AsString(wire.Field(m.props, propContentEncoding)),
		Properties:      map[string]string{},
	}
	if uid, ok := wire.Field(m.props, propUserID).([]byte); ok {
		msg.UserID = string(uid)
	}
	if t, ok := wire.Field(m.props, propExpiry).(time.Time); ok {
		msg.ExpiryTime = t
	}
	if m.value != nil && msg.Body == nil {
		if s, ok := m.value.(string); ok {
			msg.Body = []byte(s)
		}
	}
	for k, v := range m.appProps {
		name := wire.AsString(k)
		if name == "iothub-ack" {
			msg.Ack = wire.AsString(v)
			continue
		}
		if name != "" {
			msg.Properties[name] = fmt.Sprint(v)
		}
	}
	if len(msg.Properties) == 0 {
		msg.Properties = nil
	}
	// The SDKs percent-encode the device id in the address.
	if id, err := url.PathUnescape(id); err == nil {
		_, err = c.s.hub.SendC2D(context.Background(), id, msg)
		if err != nil {
			return rejected(condition(err), err.Error())
		}
		c.s.log.Info("cloud-to-device message queued over AMQP", "device", id, "messageId", msg.MessageID)
		return accepted()
	}
	return rejected("amqp:invalid-field", "the device id in the to property is not escaped correctly")
}

// condition maps a hub error to the AMQP error condition the SDKs
// translate back (amqp:not-found is DeviceNotFoundError, and so on).
func condition(err error) string {
	switch iothub.CodeOf(err) {
	case iothub.DeviceNotFound:
		return "amqp:not-found"
	case iothub.DeviceMaximumQueueDepthExceeded:
		return "amqp:resource-limit-exceeded"
	case iothub.MessageTooLarge:
		return "amqp:link:message-size-exceeded"
	case iothub.ArgumentInvalid:
		return "amqp:invalid-field"
	}
	return "amqp:internal-error"
}

// sendFeedback sends the hub's feedback records to a client's feedback
// link, a JSON array per batch, until the link or the connection ends.
// Records live in memory, and a batch taken when the connection fails is
// lost.
func (c *conn) sendFeedback(ctx context.Context, s *session, l *link) {
	for {
		recs, err := c.s.hub.TakeFeedback(ctx)
		if err != nil {
			return
		}
		body, err := json.Marshal(recs)
		if err != nil {
			return
		}
		var id wire.UUID
		_, _ = rand.Read(id[:])
		msg, err := appendSections(nil,
			perf(descProperties, id, nil, feedbackNode, nil, nil, nil, wire.Symbol(iothub.FeedbackContentType), wire.Symbol("utf-8")),
			wire.Describe(descData, body))
		if err != nil {
			return
		}
		c.mu.Lock()
		err = c.send(s, l, msg)
		c.mu.Unlock()
		if err != nil {
			return
		}
		c.s.log.Info("feedback sent over AMQP", "records", len(recs))
	}
}
