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

// maxMessage bounds a message the hub assembles from transfers.
const maxMessage = hub.MaxC2DSize + 16*1024

// message is a decoded AMQP message: the sections the hub reads.
type message struct {
	props    []any       // the properties section, by position
	appProps map[any]any // application-properties
	data     []byte      // data sections, joined
	value    any         // an amqp-value section
}

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
		case wire.DescProperties:
			m.props, _ = d.Value.([]any)
		case wire.DescAppProperties:
			m.appProps, _ = d.Value.(map[any]any)
		case wire.DescData:
			data, _ := d.Value.([]byte)
			m.data = append(m.data, data...)
		case wire.DescValue:
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
	case wire.CBSNode:
		return c.putToken(s, m)
	case wire.C2DNode:
		if !c.authorized {
			return rejected("amqp:unauthorized-access", "put a service token on $cbs first")
		}
		return c.sendC2D(m)
	}
	return rejected("amqp:not-implemented", "no such node")
}

func accepted() *wire.Described { return perf(wire.DescAccepted) }

func rejected(condition, description string) *wire.Described {
	return perf(wire.DescRejected, amqpError(condition, description))
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
		perf(wire.DescProperties, nil, nil, nil, nil, nil, wire.Field(m.props, wire.PropMessageID)),
		wire.Describe(wire.DescAppProperties, map[any]any{"status-code": int32(status), "status-description": desc}))
	if err != nil {
		return rejected("amqp:internal-error", err.Error())
	}
	for _, out := range s.links {
		if !out.receiving && out.address == wire.CBSNode {
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
	to := wire.AsString(wire.Field(m.props, wire.PropTo))
	id, ok := strings.CutPrefix(to, "/devices/")
	if ok {
		id, ok = strings.CutSuffix(id, wire.C2DNode)
	}
	if !ok || id == "" || strings.Contains(id, "/") {
		return rejected("amqp:invalid-field", fmt.Sprintf("the to property %q is not /devices/{deviceId}/messages/devicebound", to))
	}
	msg := hub.C2DMessage{
		Body:            m.data,
		MessageID:       idString(wire.Field(m.props, wire.PropMessageID)),
		CorrelationID:   idString(wire.Field(m.props, wire.PropCorrelationID)),
		ContentType:     wire.AsString(wire.Field(m.props, wire.PropContentType)),
		ContentEncoding: wire.AsString(wire.Field(m.props, wire.PropContentEncoding)),
		Properties:      map[string]string{},
	}
	if uid, ok := wire.Field(m.props, wire.PropUserID).([]byte); ok {
		msg.UserID = string(uid)
	}
	if t, ok := wire.Field(m.props, wire.PropExpiry).(time.Time); ok {
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
			return rejected(string(wire.Condition(iothub.CodeOf(err))), err.Error())
		}
		c.s.log.Info("cloud-to-device message queued over AMQP", "device", id, "messageId", msg.MessageID)
		return accepted()
	}
	return rejected("amqp:invalid-field", "the device id in the to property is not escaped correctly")
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
			perf(wire.DescProperties, id, nil, wire.FeedbackNode, nil, nil, nil, wire.Symbol(iothub.FeedbackContentType), wire.Symbol("utf-8")),
			wire.Describe(wire.DescData, body))
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
