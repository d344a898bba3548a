package amqp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// ServeService registers the nodes an IoT Hub service client uses
// (service-api §8): /messages/devicebound, where cloud-to-device messages
// are sent, and /messages/serviceBound/feedback, where what became of them
// is received. Both need a claim with ServiceConnect.
func ServeService(s *Server, h *hub.Hub) {
	s.Handle(wire.C2DNode, &c2dNode{hub: h, log: s.log})
	s.Handle(wire.FeedbackNode, &feedbackNode{hub: h, log: s.log})
	files := &fileNotificationNode{hub: h, log: s.log}
	s.Handle("/messages/serviceBound/filenotifications", files)
	s.Handle("/messages/serviceBound/fileuploadnotifications", files) // as the docs spell it
}

// fileNotificationNode sends the service its file upload notifications,
// each unsettled with a GUID delivery tag; one the receiver does not
// accept is given back and sent again (next-wave-protocols §4.4).
type fileNotificationNode struct {
	hub *hub.Hub
	log *slog.Logger
}

func (n *fileNotificationNode) Attach(l *Link) *wire.Error {
	if !l.Require(serviceConnect) {
		return errNoClaim
	}
	return nil
}

func (n *fileNotificationNode) Serve(l *Link) {
	ctx := l.Context()
	for {
		if err := l.WaitCredit(ctx); err != nil {
			return
		}
		fn, settle, err := n.hub.NextFileNotification(ctx)
		if err != nil {
			return
		}
		body, _ := json.Marshal(fn)
		id, _ := parseUUID(newUUID())
		m := &wire.Message{Properties: &wire.Properties{MessageID: wire.IDString(id), ContentType: iothub.FileNotificationContentType},
			Data: [][]byte{body}}
		err = l.SendUnsettled(ctx, m, id[:], func(state wire.DeliveryState) { settle(isAccepted(state)) })
		if err != nil {
			settle(false)
			return
		}
	}
}

// ServiceAuthorizer checks a token of one of the hub's shared access
// policies, as put on $cbs by the service SDKs; the claim holds the
// policy's rights.
func ServiceAuthorizer(h *hub.Hub) func(audience, tokenType, token string) (Claim, error) {
	return func(audience, _, token string) (Claim, error) {
		if err := h.AuthorizeService(token, hub.ServiceConnect); err != nil {
			return Claim{}, err
		}
		tok, err := sas.Parse(token)
		if err != nil {
			return Claim{}, err
		}
		exp, _ := tok.ExpiresAt()
		p, _ := h.Policy(tok.KeyName)
		return Claim{Audience: audience, Subject: tok.KeyName, Rights: uint64(p.Rights), Expiry: exp}, nil
	}
}

// serviceConnect is a claim that lets a service client in.
func serviceConnect(c Claim) bool { return hub.Rights(c.Rights)&hub.ServiceConnect != 0 }

var errNoClaim = wire.Errorf("amqp:unauthorized-access", "put a service token with ServiceConnect on $cbs first")

// c2dNode takes cloud-to-device messages addressed, in their to property,
// to /devices/{id}/messages/devicebound.
type c2dNode struct {
	hub *hub.Hub
	log *slog.Logger
}

func (n *c2dNode) Attach(*Link) *wire.Error { return nil }

func (n *c2dNode) Receive(l *Link, m *wire.Message) wire.DeliveryState {
	if !l.Authorized(serviceConnect) {
		return &wire.Rejected{Error: errNoClaim}
	}
	var props wire.Properties
	if m.Properties != nil {
		props = *m.Properties
	}
	_, segs := normalise(props.To)
	if len(segs) != 4 || !strings.EqualFold(segs[0], "devices") || segs[1] == "" ||
		!strings.EqualFold(segs[2], "messages") || !strings.EqualFold(segs[3], "devicebound") {
		return &wire.Rejected{Error: wire.Errorf("amqp:invalid-field", "the to property %q is not /devices/{deviceId}/messages/devicebound", props.To)}
	}
	id := segs[1]
	msg := hub.C2DMessage{
		Body:            m.Body(),
		MessageID:       wire.IDString(props.MessageID),
		CorrelationID:   wire.IDString(props.CorrelationID),
		UserID:          string(props.UserID),
		ContentType:     string(props.ContentType),
		ContentEncoding: string(props.ContentEncoding),
		ExpiryTime:      props.AbsoluteExpiryTime,
		Properties:      map[string]string{},
	}
	for k, v := range m.ApplicationProperties {
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
	if _, err := n.hub.SendC2D(context.Background(), id, msg); err != nil {
		return &wire.Rejected{Error: &wire.Error{Condition: wire.Condition(iothub.CodeOf(err)), Description: err.Error()}}
	}
	n.log.Info("cloud-to-device message queued over AMQP", "device", id, "messageId", msg.MessageID)
	return &wire.Accepted{}
}

// feedbackNode sends the hub's feedback records, a JSON array per batch.
type feedbackNode struct {
	hub *hub.Hub
	log *slog.Logger
}

func (n *feedbackNode) Attach(l *Link) *wire.Error {
	if !l.Require(serviceConnect) {
		return errNoClaim
	}
	return nil
}

// Serve takes a batch of records only once the client has given credit,
// so a client that attaches and withholds credit takes none. A batch goes
// unsettled; the records are deleted when the client accepts it, and
// taken again first otherwise, or when the link ends before.
func (n *feedbackNode) Serve(l *Link) {
	ctx := l.Context()
	for {
		if err := l.WaitCredit(ctx); err != nil {
			return
		}
		recs, settle, err := n.hub.TakeFeedback(ctx)
		if err != nil {
			return
		}
		body, err := json.Marshal(recs)
		if err != nil {
			settle(false)
			return
		}
		var id wire.UUID
		_, _ = rand.Read(id[:])
		msg := &wire.Message{
			Properties: &wire.Properties{MessageID: id, To: wire.FeedbackNode,
				ContentType: iothub.FeedbackContentType, ContentEncoding: "utf-8"},
			Data: [][]byte{body},
		}
		if err := l.SendUnsettled(ctx, msg, id[:], func(state wire.DeliveryState) { settle(isAccepted(state)) }); err != nil {
			settle(false)
			return
		}
		n.log.Info("feedback sent over AMQP", "records", len(recs))
	}
}
