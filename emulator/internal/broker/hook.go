package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// Limits of the device side (device-protocol §13.3).
const (
	maxTelemetry = 256 * 1024
	// maxKeepalive is the largest useful client keep-alive: the hub's
	// timeout is 1.5 times it, capped at 1767 s (device-protocol §4.1).
	maxKeepalive = 1178
)

// hook adapts mochi's callbacks to the hub.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "iothub" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished,
		mqtt.OnDisconnect, mqtt.OnPacketRead, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnPublish, mqtt.OnClientExpired,
	}, []byte{b})
}

// OnConnect refuses MQTT 5 (the hub offers only 3.1.1 on these ports,
// device-protocol §15) and caps the keep-alive.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 4 {
		_ = h.b.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return packets.ErrUnsupportedProtocolVersion
	}
	if cl.State.Keepalive == 0 || cl.State.Keepalive > maxKeepalive {
		cl.State.Keepalive = maxKeepalive
	}
	// The tier's connect throttle and the outage faults: "server
	// unavailable", which the SDKs retry.
	if err := h.b.hub.Admit(context.Background(), iothub.OpConnect, cl.ID, 0); err != nil {
		h.b.log.Info("device connection refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", err.Error())
		_ = h.b.srv.SendConnack(cl, packets.ErrServerUnavailable, false, nil)
		return err
	}
	return nil
}

// OnConnectAuthenticate checks the CONNECT of a device (device-protocol
// §4): client id, username, will and SAS password. Any failure is CONNACK 5.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	deny := func(reason string) bool {
		h.b.log.Info("device connection refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", reason)
		h.b.hub.Record(hub.ActivityError, cl.ID, "MQTT connect refused: "+reason, 0)
		return false
	}
	u, err := topic.ParseUsername(string(pk.Connect.Username))
	if err != nil {
		return deny(err.Error())
	}
	if cl.ID != hub.Key(u.DeviceID, u.ModuleID) {
		return deny(fmt.Sprintf("client id %q does not match the username's identity", cl.ID))
	}
	if pk.Connect.WillFlag { // at QoS 0 or 1: connect311 refused QoS 2 already
		t, err := topic.Parse(pk.Connect.WillTopic)
		if err != nil || t.Kind != topic.Telemetry || t.DeviceID != u.DeviceID || t.ModuleID != u.ModuleID {
			return deny("the will must be the device's own telemetry")
		}
	}
	var closeAt time.Time
	if len(pk.Connect.Password) == 0 {
		closeAt, err = h.b.hub.AuthenticateX509(u.Host, u.DeviceID, u.ModuleID, clientChain(cl))
	} else {
		closeAt, err = h.b.hub.AuthenticateDevice(u.Host, u.DeviceID, u.ModuleID, string(pk.Connect.Password))
	}
	if err != nil {
		var e *iothub.Error
		if errors.As(err, &e) {
			return deny(e.Message)
		}
		return deny(err.Error())
	}
	h.b.expiry.Store(cl, closeAt)
	return true
}

// clientChain returns the certificates the client presented in its TLS
// handshake, its own first, or nil.
func clientChain(cl *mqtt.Client) []*x509.Certificate {
	c, ok := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil
	}
	return c.ConnectionState().PeerCertificates
}

// OnACLCheck allows every publish (OnPublish decides and closes the
// connection on a bad one) and allows a subscription when its filter
// matches a topic family the hub sends this device.
func (h *hook) OnACLCheck(cl *mqtt.Client, filter string, write bool) bool {
	if write {
		return true
	}
	d, m := identity(cl.ID)
	_, err := topic.Features(filter, d, m)
	return err == nil
}

// identity splits a client id (a hub.Key) into device and module ids.
func identity(clientID string) (deviceID, moduleID string) {
	d, m, _ := strings.Cut(clientID, "/")
	return d, m
}

// OnSessionEstablish lets a persistent session the hub stored (before a
// restart, say) count as present in the CONNACK: mochi reports a session
// present only for a client it holds, so it is given a placeholder to take
// over (device-protocol §5.4).
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean || !h.b.hub.HasSession(cl.ID) {
		return
	}
	if _, ok := h.b.srv.Clients.Get(cl.ID); ok {
		return
	}
	h.b.srv.Clients.Add(h.b.srv.NewClient(nil, "stored-session", cl.ID, false))
}

// OnSessionEstablished attaches the connection to the hub and arms the
// token-expiry timer: the hub closes a connection whose SAS token expired
// (device-protocol §3.4).
func (h *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if dc, ok := cl.Net.Conn.(*deadlineConn); ok {
		dc.authenticated()
	}
	l := &link{b: h.b, cl: cl}
	if pk.Connect.WillFlag {
		// The will is published as the device's telemetry by OnDisconnect,
		// never through the broker.
		cl.Properties.Will = mqtt.Will{}
		l.will = &pendingWill{topic: pk.Connect.WillTopic, payload: pk.Connect.WillPayload}
	}
	conn, _, err := h.b.hub.Attach(context.Background(), cl.ID, l, !pk.Connect.Clean)
	if err != nil {
		h.b.log.Warn("attach failed", "client", cl.ID, "error", err)
		cl.Stop(err)
		return
	}
	l.conn = conn
	if u, err := topic.ParseUsername(string(pk.Connect.Username)); err == nil && u.ModelID != "" {
		if err := h.b.hub.AnnounceModel(cl.ID, u.ModelID); err != nil {
			h.b.log.Warn("model id not recorded", "client", cl.ID, "error", err)
		}
	}
	h.b.links.Store(cl, l)
	if v, ok := h.b.expiry.LoadAndDelete(cl); ok {
		l.timer = time.AfterFunc(time.Until(v.(time.Time)), func() { l.drop("the SAS token expired") })
	}
}

// OnClientExpired drops the subscriptions mochi holds for a client it
// forgets (a disconnected persistent session: MaximumSessionExpiryInterval
// is 0), which it would otherwise keep in its topic tree for ever. The
// hub keeps the session; mochi's tree routes nothing here.
func (h *hook) OnClientExpired(cl *mqtt.Client) { h.b.srv.UnsubscribeClient(cl) }

// OnDisconnect detaches the connection; an ungraceful close publishes the
// will as telemetry (device-protocol §4.1).
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.b.expiry.Delete(cl)
	l := h.b.linkOf(cl)
	if l == nil {
		return
	}
	h.b.links.Delete(cl)
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.will != nil && err != nil && !errors.Is(err, packets.CodeDisconnect) {
		if t, perr := topic.Parse(l.will.topic); perr == nil {
			if err := l.conn.Telemetry(t.ModuleID, bagMap(t.Properties, "iothub-MessageType", "Will"), l.will.payload); err != nil {
				h.b.log.Error("will not stored", "client", cl.ID, "error", err)
			}
		}
	}
	h.b.hub.Detach(l.conn)
}

// errQoS2 closes a connection that publishes at QoS 2 (device-protocol §12).
// Wrapping ErrRejectPacket makes mochi end the connection.
var errQoS2 = fmt.Errorf("%w: QoS 2 publishes are not supported", packets.ErrRejectPacket)

// OnPacketRead closes the connection on a QoS 2 PUBLISH and completes
// cloud-to-device messages on PUBACK.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch {
	case pk.FixedHeader.Type == packets.Connect && pk.ProtocolVersion < 5:
		return h.connect311(cl, pk)
	case pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos == 2:
		h.b.log.Info("closing device connection", "client", cl.ID, "reason", errQoS2)
		return pk, errQoS2
	case pk.FixedHeader.Type == packets.Puback:
		if l := h.b.linkOf(cl); l != nil {
			l.acked(pk.PacketID)
		}
	}
	return pk, nil
}

// errRefused ends a CONNECT refused with a CONNACK already sent.
var errRefused = fmt.Errorf("%w: connect refused", packets.ErrRejectPacket)

// connect311 keeps the CONNACK of an MQTT 3.1 or 3.1.1 client within
// the return codes those versions have (0 to 5): mochi checks a CONNECT
// against MQTT 5 rules before any hook sees it and would answer 0x80,
// 0x82, 0x9A or 0x9B. MQTT 3.1 is refused with 1 (device-protocol §15);
// a malformed CONNECT is closed without a CONNACK [MQTT-3.1.4-1]; a will
// with RETAIN is accepted, as IoT Hub accepts retained telemetry, and
// carries mqtt-retain = true (device-protocol §12); a will at QoS 2 is
// refused as every will the hub cannot publish is (CONNACK 5); a
// persistent session without a client id is CONNACK 2.
func (h *hook) connect311(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.ProtocolVersion < 4 {
		_ = h.b.srv.SendConnack(cl, packets.Err3UnsupportedProtocolVersion, false, nil)
		return pk, errRefused
	}
	if code := pk.ConnectValidate(); code != packets.CodeSuccess {
		h.b.log.Info("device connection closed", "remote", cl.Net.Remote, "reason", "malformed CONNECT: "+code.Reason)
		return pk, errRefused
	}
	switch {
	case pk.Connect.ClientIdentifier == "" && !pk.Connect.Clean:
		_ = h.b.srv.SendConnack(cl, packets.Err3ClientIdentifierNotValid, false, nil)
		return pk, errRefused
	case pk.Connect.WillFlag && pk.Connect.WillQos > 1:
		h.b.log.Info("device connection refused", "client", pk.Connect.ClientIdentifier, "remote", cl.Net.Remote, "reason", "a will at QoS 2")
		_ = h.b.srv.SendConnack(cl, packets.Err3NotAuthorized, false, nil)
		return pk, errRefused
	case pk.Connect.WillFlag && pk.Connect.WillRetain:
		pk.Connect.WillRetain = false
		sep := "&"
		if strings.HasSuffix(pk.Connect.WillTopic, "/") {
			sep = ""
		}
		pk.Connect.WillTopic += sep + "mqtt-retain=true"
	}
	return pk, nil
}

// OnSubscribe closes the connection when a filter matches nothing the hub
// sends this device, as IoT Hub does; in lenient mode OnACLCheck answers
// such a filter with 0x80 instead (device-protocol §5.1).
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if h.b.cfg.Lenient {
		return pk
	}
	d, m := identity(cl.ID)
	for _, f := range pk.Filters {
		if _, err := topic.Features(f.Filter, d, m); err != nil {
			if l := h.b.linkOf(cl); l != nil {
				l.drop(err.Error())
			} else {
				cl.Stop(err)
			}
			break
		}
	}
	return pk
}

// OnSubscribed records the granted families with the hub before the SUBACK
// leaves, so the subscription is in force (and, for a persistent session,
// stored) when the device learns of it.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	l := h.b.linkOf(cl)
	if l == nil {
		return
	}
	var subs hub.Subscriptions
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] <= 1 {
			fs := features(f.Filter, cl.ID)
			if fs&hub.SubC2D != 0 {
				l.c2dAtMostOnce.Store(codes[i] == 0)
			}
			subs |= fs
		}
	}
	if err := h.b.hub.Subscribe(l.conn, subs); err != nil {
		h.b.log.Error("storing subscriptions failed", "client", cl.ID, "error", err)
	}
}

// OnUnsubscribed removes the families of the filters.
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	l := h.b.linkOf(cl)
	if l == nil {
		return
	}
	var subs hub.Subscriptions
	for _, f := range pk.Filters {
		subs |= features(f.Filter, cl.ID)
	}
	if err := h.b.hub.Unsubscribe(l.conn, subs); err != nil {
		h.b.log.Error("storing subscriptions failed", "client", cl.ID, "error", err)
	}
}

func features(filter, clientID string) hub.Subscriptions {
	d, m := identity(clientID)
	f, _ := topic.Features(filter, d, m)
	var s hub.Subscriptions
	for _, m := range []struct {
		t topic.Feature
		h hub.Subscriptions
	}{
		{topic.FeatureMethods, hub.SubMethods},
		{topic.FeatureTwinResponses, hub.SubTwinResponses},
		{topic.FeatureDesired, hub.SubDesired},
		{topic.FeatureC2D, hub.SubC2D},
	} {
		if f&m.t != 0 {
			s |= m.h
		}
	}
	return s
}

// OnPublish hands a device's publish to the hub. It never lets the broker
// route it: the result is CodeSuccessIgnore (acknowledged at QoS 1, after
// the hub is done, delivered nowhere) or, for a publish the hub does not
// accept, the connection is closed (device-protocol §6).
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	l := h.b.linkOf(cl)
	if l == nil {
		cl.Stop(errors.New("publish before the session was established"))
		return pk, packets.ErrRejectPacket
	}
	wait, reason := h.b.handlePublish(l, pk.TopicName, pk.Payload)
	if reason != "" {
		l.drop(reason)
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos == 0 {
		// No acknowledgement to order: the read waits, which also slows
		// a device that floods at QoS 0 to what the store takes.
		if wait != nil {
			if err := wait(); err != nil {
				l.drop("the message could not be stored: " + err.Error())
			}
		}
		return pk, packets.CodeSuccessIgnore
	}
	// Every QoS 1 PUBACK goes through the link's queue, telemetry's after
	// the message is durable, so they keep the order of the publishes.
	if err := l.ackAfter(pk.PacketID, wait); err != nil {
		l.drop("the message could not be acknowledged: " + err.Error())
	}
	return pk, packets.ErrRejectPacket
}

// handlePublish processes one publish and returns why the connection must
// close, or "", and for telemetry the wait for it to be durable.
func (b *Broker) handlePublish(l *link, name string, payload []byte) (wait func() error, reason string) {
	t, err := topic.Parse(name)
	if err != nil {
		return nil, err.Error()
	}
	id := l.cl.ID
	switch t.Kind {
	case topic.MethodResponse:
		if len(payload) > iothub.MaxMethodPayload {
			return nil, "method response larger than 128 KB"
		}
		l.conn.CompleteMethod(t.RequestID, t.Status, payload)
	case topic.TwinGet:
		l.conn.Touch()
		props, err := b.hub.DeviceTwin(id)
		b.twinReply(l, t.RequestID, 200, props, 0, err)
	case topic.TwinPatchReported:
		l.conn.Touch()
		patch, err := iothub.DecodeObject(payload)
		if err != nil {
			err = iothub.Errorf(iothub.ArgumentInvalid, "the reported patch is not a JSON object: %v", err)
			b.twinReply(l, t.RequestID, 0, nil, 0, err)
			return nil, ""
		}
		v, err := b.hub.UpdateReported(context.Background(), id, patch)
		b.twinReply(l, t.RequestID, 204, nil, v, err)
	case topic.Telemetry:
		if hub.Key(t.DeviceID, t.ModuleID) != id {
			return nil, fmt.Sprintf("telemetry on another identity's topic %q", name)
		}
		if len(payload)+len(name) > maxTelemetry {
			return nil, "telemetry message larger than 256 KB"
		}
		// The PUBACK follows once the message is durable; a message that
		// could not be stored is never acknowledged.
		return l.conn.QueueTelemetry(t.ModuleID, bagMap(t.Properties), payload), ""
	default:
		return nil, fmt.Sprintf("devices cannot publish to %s topics", t.Kind)
	}
	return nil, ""
}

// twinReply answers a twin request with status and body, or with err's
// status and JSON error body (device-protocol §11.2). Responses go only to
// a connection subscribed to them.
func (b *Broker) twinReply(l *link, rid string, status int, body any, version int64, err error) {
	if !l.conn.Subscribed(hub.SubTwinResponses) {
		b.log.Debug("twin response dropped: not subscribed", "client", l.cl.ID, "rid", rid)
		return
	}
	var payload []byte
	if err != nil {
		var e *iothub.Error
		if !errors.As(err, &e) {
			e = iothub.Errorf(iothub.ServerError, "%v", err)
		}
		status, version = e.Code.HTTPStatus(), 0
		payload, _ = json.Marshal(e.DeviceError(hub.TrackingID(), time.Now()))
	} else if body != nil {
		payload, _ = json.Marshal(body)
	}
	if werr := l.publish(topic.TwinResult(status, rid, version), payload); werr != nil {
		b.log.Debug("twin response not delivered", "client", l.cl.ID, "error", werr)
	}
}

// bagMap flattens a property bag (last value wins) plus extra pairs.
func bagMap(p topic.Properties, extra ...string) map[string]string {
	m := make(map[string]string, len(p)+len(extra)/2)
	for _, prop := range p {
		v, _ := p.Get(prop.Key)
		m[prop.Key] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}
