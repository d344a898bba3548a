package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// The device face (next-wave-protocols §2): devices and modules on AMQP,
// over TLS or WebSocket, authenticated by a token put on $cbs for their
// audience or by their TLS client certificate. Each identity on a
// connection is one hub connection, whose subscriptions its links imply:
// the cloud-to-device receiver, the method receiver, and the twin
// channel with its PUT of the desired-properties notifications.

// claimDevice marks a claim for one identity, its Subject the identity's
// key; a policy's claims carry the policy's rights instead.
const claimDevice = 1 << 32

// DeviceAuthorizer accepts device and module tokens put on $cbs for
// their own audience ({host}/devices/{id}[/modules/{m}], percent-encoded
// as Node sends it or not as C# does), verified by the token's own scope,
// and hands every other token to next.
func DeviceAuthorizer(h *hub.Hub, next func(audience, tokenType, token string) (Claim, error)) func(audience, tokenType, token string) (Claim, error) {
	return func(audience, tokenType, token string) (Claim, error) {
		name, err := url.PathUnescape(audience)
		if err != nil {
			name = audience
		}
		_, d, m, ok := sas.ParseDeviceResource(strings.TrimPrefix(strings.TrimPrefix(name, "amqps://"), "sb://"))
		if !ok {
			return next(audience, tokenType, token)
		}
		tok, err := sas.Parse(token)
		if err != nil {
			return Claim{}, err
		}
		sr, _ := tok.Audience()
		host, _, _ := strings.Cut(sr, "/")
		exp, err := h.AuthenticateDevice(host, d, m, token)
		if err != nil {
			return Claim{}, err
		}
		return Claim{Audience: name, Subject: hub.Key(d, m), Rights: claimDevice, Expiry: exp}, nil
	}
}

// ServeDevices registers the device and module links.
func ServeDevices(s *Server, h *hub.Hub) {
	f := &deviceFace{hub: h, log: s.log}
	for _, prefix := range []string{"devices/*", "devices/*/modules/*"} {
		s.Handle(prefix+"/messages/events", &eventsNode{f})
		s.Handle(prefix+"/messages/devicebound", &deviceBoundNode{f})
		s.Handle(prefix+"/methods/devicebound", &methodsNode{f})
		s.Handle(prefix+"/twin", &twinNode{f})
	}
}

type deviceFace struct {
	hub *hub.Hub
	log *slog.Logger
}

// identityOf reads the device and module a link's address names.
func identityOf(l *Link) (deviceID, moduleID string) {
	if len(l.Segments) > 3 && strings.EqualFold(l.Segments[2], "modules") {
		return l.Segments[1], l.Segments[3]
	}
	return l.Segments[1], ""
}

// session authorizes the link's identity and returns its hub connection
// on this AMQP connection, made on first use.
func (f *deviceFace) session(l *Link) (*deviceSession, *wire.Error) {
	d, m := identityOf(l)
	key := hub.Key(d, m)
	ok := l.Require(func(c Claim) bool {
		if c.Rights&claimDevice != 0 {
			return strings.EqualFold(c.Subject, key)
		}
		return hub.Rights(c.Rights)&hub.DeviceConnect != 0 // a policy that may connect any device
	})
	if !ok {
		certs := l.PeerCertificates()
		if len(certs) == 0 {
			return nil, wire.Errorf("amqp:unauthorized-access", "put a token for %s on $cbs first", key)
		}
		if _, err := f.hub.AuthenticateX509(l.HostName(), d, m, certs); err != nil {
			return nil, wire.Errorf("amqp:unauthorized-access", "%v", err)
		}
	}
	v := l.Shared("device:"+key, func() (any, func()) {
		ds := &deviceSession{face: f, key: key, deviceID: d, moduleID: m, wake: make(chan struct{}, 1),
			inflight: make(chan struct{}, maxInflight), closer: l}
		if err := f.hub.Admit(context.Background(), iothub.OpConnect, key, 0); err != nil {
			ds.err = err
			return ds, nil
		}
		c, _, err := f.hub.Attach(context.Background(), key, ds, false)
		if err != nil {
			ds.err = err
			return ds, nil
		}
		ds.conn = c
		return ds, func() { f.hub.Detach(c) }
	})
	ds := v.(*deviceSession)
	if ds.err != nil {
		switch iothub.CodeOf(ds.err) {
		case iothub.ServiceUnavailable, iothub.ThrottlingException:
			return nil, wire.Errorf(wire.Condition(iothub.CodeOf(ds.err)), "%v", ds.err)
		}
		return nil, wire.Errorf("amqp:unauthorized-access", "%v", ds.err)
	}
	return ds, nil
}

// deviceSession is one identity on one AMQP connection: the hub's Link
// to it.
type deviceSession struct {
	face               *deviceFace
	key                string
	deviceID, moduleID string
	conn               *hub.Conn
	err                error
	closer             *Link         // a link of the connection, to close it by
	wake               chan struct{} // a cloud-to-device message may be waiting
	inflight           chan struct{} // a place per telemetry message not yet stored

	mu         sync.Mutex
	methodsOut *Link // guarded by mu; where method requests go
	twinOut    *Link // guarded by mu; where twin responses and desired patches go
}

// NextRequestID implements hub.Link: a GUID, which C# requires (§2.7).
func (ds *deviceSession) NextRequestID() string { return newUUID() }

// SendMethod implements hub.Link.
func (ds *deviceSession) SendMethod(name, rid string, payload []byte) error {
	out := ds.out(&ds.methodsOut)
	if out == nil {
		return errors.New("the device has no method link")
	}
	id, err := parseUUID(rid)
	if err != nil {
		return err
	}
	out.Offer(&wire.Message{Properties: &wire.Properties{CorrelationID: id},
		ApplicationProperties: map[any]any{wire.MethodNameProperty: name}, Data: [][]byte{payload}})
	return nil
}

// SendDesired implements hub.Link: a patch without a correlation id.
func (ds *deviceSession) SendDesired(version int64, body []byte) error {
	out := ds.out(&ds.twinOut)
	if out == nil {
		return errors.New("the device has no twin link")
	}
	out.Offer(&wire.Message{Data: [][]byte{body}})
	return nil
}

// SendC2D implements hub.Link: the device-bound link locks and sends
// messages itself (ReceiveC2D); this only wakes it.
func (ds *deviceSession) SendC2D(hub.C2DMessage) error {
	select {
	case ds.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close implements hub.Link: the whole AMQP connection closes, with
// amqp:connection:forced when a second connection of the device replaced
// this one (the SDKs do not reconnect), amqp:unauthorized-access for an
// identity or token no longer valid, and the code's condition otherwise
// (amqp:internal-error for an outage, which the SDKs retry).
func (ds *deviceSession) Close(e *iothub.Error) {
	cond := wire.Condition(e.Code)
	switch e.Code {
	case iothub.ConnectionForcefullyClosed:
		cond = "amqp:connection:forced"
	case iothub.IotHubUnauthorized:
		cond = "amqp:unauthorized-access"
	}
	ds.closer.CloseConnection(wire.Errorf(cond, "%s", e.Message))
}

func (ds *deviceSession) out(p **Link) *Link {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return *p
}

// setOut makes l the session's outgoing link of its kind.
func (ds *deviceSession) setOut(l *Link, p **Link) {
	ds.mu.Lock()
	*p = l
	ds.mu.Unlock()
}

// serveOut keeps l as the session's outgoing link of its kind until it
// ends, subscribed to subs meanwhile.
func (ds *deviceSession) serveOut(l *Link, p **Link, subs hub.Subscriptions) {
	ds.setOut(l, p)
	if subs != 0 {
		ds.face.hub.Subscribe(ds.conn, subs)
	}
	<-l.Context().Done()
	ds.mu.Lock()
	if *p == l {
		*p = nil
	}
	ds.mu.Unlock()
	if subs != 0 {
		ds.face.hub.Unsubscribe(ds.conn, subs)
	}
}

// eventsNode takes telemetry: each message is stored before it is
// accepted (§2.4).
type eventsNode struct{ f *deviceFace }

func (n *eventsNode) Attach(l *Link) *wire.Error {
	_, err := n.f.session(l)
	return err
}

// Receive stores one message and returns its outcome (a batch's
// messages come this way, one after another).
func (n *eventsNode) Receive(l *Link, m *wire.Message) wire.DeliveryState {
	ds, wait, outcome := n.queue(l, m)
	if outcome != nil {
		return outcome
	}
	<-ds.inflight
	return storedOutcome(wait())
}

// ReceiveAsync queues one message in the telemetry log and settles it
// once it is durable, while the connection reads on, so a device's
// messages in flight share group commits; past maxInflight unsettled
// ones the reader waits.
func (n *eventsNode) ReceiveAsync(l *Link, m *wire.Message, settle func(wire.DeliveryState)) {
	ds, wait, outcome := n.queue(l, m)
	if outcome != nil {
		settle(outcome)
		return
	}
	go func() {
		outcome := storedOutcome(wait())
		<-ds.inflight
		settle(outcome)
	}()
}

// queue checks a message and queues it in the telemetry log, taking a
// place among the identity's messages in flight; a non-nil outcome
// refuses it.
func (n *eventsNode) queue(l *Link, m *wire.Message) (*deviceSession, func() error, wire.DeliveryState) {
	ds, werr := n.f.session(l)
	if werr != nil {
		return nil, nil, &wire.Rejected{Error: werr}
	}
	body := m.Body()
	props := wire.EventProperties(m)
	size := len(body)
	for k, v := range props {
		size += len(k) + len(v)
	}
	if size > 256*1024 {
		return nil, nil, &wire.Rejected{Error: wire.Errorf("amqp:link:message-size-exceeded", "the message is %d bytes; the limit is 256 KB", size)}
	}
	ds.inflight <- struct{}{}
	return ds, ds.conn.QueueTelemetry(ds.moduleID, props, body), nil
}

func storedOutcome(err error) wire.DeliveryState {
	var he *iothub.Error
	if errors.As(err, &he) {
		return &wire.Rejected{Error: wire.Errorf(wire.Condition(he.Code), "%s", he.Message)}
	}
	if err != nil {
		return &wire.Rejected{Error: wire.Errorf("amqp:internal-error", "the message could not be stored: %v", err)}
	}
	return &wire.Accepted{}
}

// maxInflight bounds an identity's telemetry messages waiting to be
// stored on one connection.
const maxInflight = 256

// deviceBoundNode sends a device its cloud-to-device messages, each
// locked (ReceiveC2D) and sent unsettled with its lock token as a
// 16-byte delivery tag; the device settles it with accepted (complete),
// released or modified (abandon) or rejected (§2.5). Modules attach and
// get nothing, as on a cloud hub.
type deviceBoundNode struct{ f *deviceFace }

func (n *deviceBoundNode) Attach(l *Link) *wire.Error {
	_, err := n.f.session(l)
	return err
}

func (n *deviceBoundNode) Serve(l *Link) {
	ds, werr := n.f.session(l)
	if werr != nil {
		l.Detach(werr)
		return
	}
	ctx := l.Context()
	if ds.moduleID != "" {
		<-ctx.Done()
		return
	}
	h := n.f.hub
	h.Subscribe(ds.conn, hub.SubC2D)
	defer h.Unsubscribe(ds.conn, hub.SubC2D)
	for {
		if err := l.WaitCredit(ctx); err != nil {
			return
		}
		m, ok, err := h.ReceiveC2D(ctx, ds.deviceID, 0)
		if err != nil {
			l.Detach(wire.Errorf("amqp:internal-error", "%v", err))
			return
		}
		if !ok {
			// Woken by a new message, or a second later for a lock that expired.
			select {
			case <-ds.wake:
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		tag, _ := parseUUID(m.Lock)
		lock := m.Lock
		err = l.SendUnsettled(ctx, c2dMessage(m, ds.deviceID), tag[:], func(state wire.DeliveryState) {
			outcome := hub.C2DAbandon
			switch state.(type) {
			case *wire.Accepted:
				outcome = hub.C2DComplete
			case *wire.Rejected:
				outcome = hub.C2DReject
			}
			if err := h.SettleC2D(context.Background(), ds.deviceID, lock, outcome); err != nil {
				n.f.log.Debug("cloud-to-device settlement not applied", "device", ds.deviceID, "error", err)
			}
		})
		if err != nil {
			h.SettleC2D(context.Background(), ds.deviceID, lock, hub.C2DAbandon)
			return
		}
	}
}

// c2dMessage renders a locked message as the hub sends it (§2.5).
func c2dMessage(m hub.C2DMessage, deviceID string) *wire.Message {
	p := &wire.Properties{To: "/devices/" + deviceID + "/messages/deviceBound", UserID: []byte(m.UserID),
		ContentType: wire.Symbol(m.ContentType), ContentEncoding: wire.Symbol(m.ContentEncoding)}
	if m.MessageID != "" {
		p.MessageID = m.MessageID
	}
	if m.CorrelationID != "" {
		p.CorrelationID = m.CorrelationID
	}
	if len(p.UserID) == 0 {
		p.UserID = nil
	}
	if m.ExpirySet {
		p.AbsoluteExpiryTime = m.ExpiryTime
	}
	app := map[any]any{}
	for k, v := range m.Properties {
		app[k] = v
	}
	ack := m.Ack
	if ack == "" {
		ack = "none"
	}
	app["iothub-ack"] = ack
	body := m.Body
	if body == nil {
		body = []byte{}
	}
	return &wire.Message{Properties: p, ApplicationProperties: app, Data: [][]byte{body},
		MessageAnnotations: map[any]any{
			wire.Symbol(wire.EnqueuedTimeAnnotation):  m.EnqueuedTime,
			wire.Symbol(wire.DeliveryCountAnnotation): uint8(min(m.DeliveryCount, 255)),
			wire.Symbol("x-opt-sequence-number"):      uint64(m.SequenceNumber),
			wire.Symbol(wire.LockTokenAnnotation):     m.Lock,
		}}
}

// methodsNode is the pair of method links on one address (§2.7): the
// device receives requests on one and sends its responses on the other.
type methodsNode struct{ f *deviceFace }

func (n *methodsNode) Attach(l *Link) *wire.Error {
	ds, err := n.f.session(l)
	if err == nil && !l.clientSends {
		ds.setOut(l, &ds.methodsOut)
	}
	return err
}

func (n *methodsNode) Serve(l *Link) {
	if ds, err := n.f.session(l); err == nil {
		ds.serveOut(l, &ds.methodsOut, hub.SubMethods)
	}
}

func (n *methodsNode) Receive(l *Link, m *wire.Message) wire.DeliveryState {
	ds, werr := n.f.session(l)
	if werr != nil {
		return &wire.Rejected{Error: werr}
	}
	var rid string
	if m.Properties != nil {
		rid = wire.IDString(m.Properties.CorrelationID)
	}
	status, ok := wire.AsInt(m.ApplicationProperties[wire.MethodStatusProperty])
	if rid == "" || !ok {
		return &wire.Rejected{Error: wire.Errorf("amqp:invalid-field", "a method response needs a correlation-id and an %s", wire.MethodStatusProperty)}
	}
	ds.conn.CompleteMethod(rid, int(status), m.Body())
	return &wire.Accepted{}
}

// twinNode is the twin channel (§2.6): requests by their operation
// annotation on the device's sender, answers with a status annotation and
// the request's correlation id on its receiver, and desired patches,
// once the device PUTs that subscription, without one.
type twinNode struct{ f *deviceFace }

func (n *twinNode) Attach(l *Link) *wire.Error {
	ds, err := n.f.session(l)
	if err == nil && !l.clientSends {
		// Now, not when Serve starts: the device sends its first
		// request (settled: it never hears of a rejection) as soon as
		// this attach is answered.
		ds.setOut(l, &ds.twinOut)
	}
	return err
}

func (n *twinNode) Serve(l *Link) {
	if ds, err := n.f.session(l); err == nil {
		ds.serveOut(l, &ds.twinOut, 0)
		n.f.hub.Unsubscribe(ds.conn, hub.SubDesired)
	}
}

func (n *twinNode) Receive(l *Link, m *wire.Message) wire.DeliveryState {
	ds, werr := n.f.session(l)
	if werr != nil {
		return &wire.Rejected{Error: werr}
	}
	out := ds.out(&ds.twinOut)
	if out == nil {
		return &wire.Rejected{Error: wire.Errorf("amqp:precondition-failed", "attach the twin receiver before sending twin requests")}
	}
	h := n.f.hub
	op := wire.AsString(m.MessageAnnotations[wire.Symbol(wire.TwinOperation)])
	resource := wire.AsString(m.MessageAnnotations[wire.Symbol(wire.TwinResource)])
	var (
		status  int
		body    any
		version int64
		err     error
	)
	ds.conn.Touch()
	switch {
	case op == "GET":
		status = 200
		body, err = h.DeviceTwin(ds.key)
	case op == "PATCH" && resource == wire.TwinReportedResource:
		var patch map[string]any
		if patch, err = iothub.DecodeObject(m.Body()); err != nil {
			err = iothub.Errorf(iothub.ArgumentInvalid, "the reported patch is not a JSON object: %v", err)
			break
		}
		status = 204
		version, err = h.UpdateReported(context.Background(), ds.key, patch)
	case op == "PUT" && resource == wire.TwinDesiredResource:
		status, err = 200, h.Subscribe(ds.conn, hub.SubDesired)
	case op == "DELETE" && resource == wire.TwinDesiredResource:
		status, err = 200, h.Unsubscribe(ds.conn, hub.SubDesired)
	default:
		err = iothub.Errorf(iothub.ArgumentInvalid, "twin operation %q on %q is not supported", op, resource)
	}
	var payload []byte
	if err != nil {
		var e *iothub.Error
		if !errors.As(err, &e) {
			e = iothub.Errorf(iothub.ServerError, "%v", err)
		}
		status = e.Code.HTTPStatus()
		payload, _ = json.Marshal(e.DeviceError(hub.TrackingID(), time.Now()))
	} else if body != nil {
		payload, _ = json.Marshal(body)
	}
	ann := map[any]any{wire.Symbol(wire.TwinStatus): int32(status)}
	if version > 0 {
		ann[wire.Symbol(wire.TwinVersion)] = version
	}
	var corr any
	if m.Properties != nil {
		corr = m.Properties.CorrelationID
	}
	resp := &wire.Message{Properties: &wire.Properties{CorrelationID: corr}, MessageAnnotations: ann}
	if len(payload) > 0 {
		resp.Data = [][]byte{payload}
	}
	out.Offer(resp)
	return &wire.Accepted{}
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return wire.IDString(wire.UUID(b))
}

func parseUUID(s string) (wire.UUID, error) {
	var u wire.UUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return u, fmt.Errorf("%q is not a GUID", s)
	}
	copy(u[:], b)
	return u, nil
}
