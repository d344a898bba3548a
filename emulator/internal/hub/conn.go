package hub

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Link is one device connection as the hub sees it; the broker implements
// it. Everything the hub sends a device goes through its own Link, never
// through a broadcast.
type Link interface {
	// NextRequestID returns a new request id for a method call on this
	// connection.
	NextRequestID() string
	// SendMethod delivers a method request.
	SendMethod(name, rid string, payload []byte) error
	// SendDesired delivers a desired-properties notification.
	SendDesired(version int64, body []byte) error
	// SendC2D delivers a cloud-to-device message; the link reports the
	// device's acknowledgement with Conn.CompleteC2D.
	SendC2D(m C2DMessage) error
	// Close closes the connection; e says why, with the code the face
	// maps to its protocol (a replacement is ConnectionForcefullyClosed,
	// which clients do not retry; ServiceUnavailable, which they do).
	Close(e *iothub.Error)
}

// Subscriptions is a set of topic families a device subscribed to.
type Subscriptions uint8

// Topic families (device-protocol §5.1).
const (
	SubMethods       Subscriptions = 1 << iota // direct-method requests
	SubTwinResponses                           // twin GET and PATCH responses
	SubDesired                                 // desired-property notifications
	SubC2D                                     // cloud-to-device messages
)

// Conn is a device's connection, attached to the hub.
type Conn struct {
	hub        *Hub
	e          *entry
	link       Link
	persistent bool
	subs       atomic.Uint32

	sentMu sync.Mutex
	sent   map[string]bool // guarded by sentMu; C2D lock tokens sent on this connection

	callsMu sync.Mutex
	calls   map[string]chan iothub.MethodResult // guarded by callsMu; pending method calls by request id
}

// Subscribed reports whether the connection receives every family in s.
func (c *Conn) Subscribed(s Subscriptions) bool {
	return Subscriptions(c.subs.Load())&s == s
}

// Attach records that the identity key (a device id or a module's Key)
// connected over link. With persistent (MQTT
// CleanSession=0) the subscriptions of its previous session, even from
// before a restart, apply at once; otherwise they are discarded
// (device-protocol §5.4). It returns the connection and whether a session
// was present.
func (h *Hub) Attach(ctx context.Context, deviceID string, link Link, persistent bool) (*Conn, bool, error) {
	e, err := h.entry(deviceID)
	if err != nil {
		return nil, false, err
	}
	c := &Conn{hub: h, e: e, link: link, persistent: persistent}
	session := e.rec.Load().Session
	present := persistent && session != 0
	if persistent {
		c.subs.Store(uint32(session))
	} else if session != 0 {
		if err := h.setSession(e, 0); err != nil {
			return nil, false, err
		}
	}
	parent := e // a module's device, looked up before connMu (Hub.mu comes first)
	if rec := e.rec.Load(); rec.ModuleID != "" {
		if parent, err = h.entry(rec.Device.DeviceID); err != nil {
			return nil, false, err
		}
	}
	e.connMu.Lock()
	// Checked under connMu, which deletion and disabling take before
	// they close the current connection: a connection authenticated
	// just before either does not outlive it.
	if e.gone.Load() || parent.gone.Load() {
		e.connMu.Unlock()
		return nil, false, notFound(e.id)
	}
	if e.rec.Load().Device.Status != iothub.StatusEnabled || parent.rec.Load().Device.Status != iothub.StatusEnabled {
		e.connMu.Unlock()
		return nil, false, iothub.Errorf(iothub.IotHubUnauthorized, "%s is disabled", e.id)
	}
	old := e.conn
	e.conn = c
	e.live.connected.Store(true)
	e.live.stateUpdated.Store(h.now().UnixNano())
	e.live.lastActivity.Store(h.now().UnixNano())
	e.notifyLocked()
	e.connMu.Unlock()
	if old != nil {
		old.link.Close(iothub.Errorf(iothub.ConnectionForcefullyClosed, "a new connection of the same device replaced it"))
	}
	h.log.Info("device connected", "device", deviceID, "persistent", persistent, "sessionPresent", present)
	h.Record(ActivityConnected, e.id, "connected", 0)
	h.deliverC2D(e)
	return c, present, nil
}

// HasSession reports whether the identity key has stored subscriptions
// from a persistent session.
func (h *Hub) HasSession(key string) bool {
	e, err := h.entry(key)
	return err == nil && e.rec.Load().Session != 0
}

// Detach records that c closed. A connection that was already replaced
// changes nothing.
func (h *Hub) Detach(c *Conn) {
	e := c.e
	e.connMu.Lock()
	defer e.connMu.Unlock()
	if e.conn != c {
		return
	}
	e.conn = nil
	e.live.connected.Store(false)
	e.live.stateUpdated.Store(h.now().UnixNano())
	e.notifyLocked()
	h.log.Info("device disconnected", "device", e.id)
	h.Record(ActivityDisconnected, e.id, "disconnected", 0)
}

// Subscribe adds families to c. For a persistent session they are stored
// before Subscribe returns, so they survive a restart.
func (h *Hub) Subscribe(c *Conn, s Subscriptions) error {
	return h.changeSubs(c, func(old uint32) uint32 { return old | uint32(s) })
}

// Unsubscribe removes families from c.
func (h *Hub) Unsubscribe(c *Conn, s Subscriptions) error {
	return h.changeSubs(c, func(old uint32) uint32 { return old &^ uint32(s) })
}

func (h *Hub) changeSubs(c *Conn, change func(uint32) uint32) error {
	c.e.connMu.Lock()
	c.subs.Store(change(c.subs.Load()))
	c.e.notifyLocked()
	c.e.connMu.Unlock()
	if c.persistent {
		if err := h.setSession(c.e, Subscriptions(c.subs.Load())); err != nil {
			return err
		}
	}
	h.deliverC2D(c.e)
	return nil
}

// setSession stores a device's persistent subscriptions if they changed.
func (h *Hub) setSession(e *entry, s Subscriptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rec.Load().Session == s {
		return nil
	}
	next := e.clone()
	next.Session = s
	return h.commitLocked(e, next)
}

// Touch records device activity (lastActivityTime).
func (c *Conn) Touch() {
	c.e.live.lastActivity.Store(c.hub.now().UnixNano())
}

// disconnect closes e's connection, if any.
func (h *Hub) disconnect(e *entry, reason string) {
	c, _ := e.current()
	if c != nil {
		c.link.Close(iothub.Errorf(iothub.IotHubUnauthorized, "%s", reason))
	}
}

// sendDesired notifies e's connection of a desired change if it subscribed
// (device-protocol §11.1). The caller holds e.mu, so notifications leave in
// version order.
func (h *Hub) sendDesired(e *entry, version int64, body []byte) {
	c, _ := e.current()
	if c == nil || !c.Subscribed(SubDesired) {
		return
	}
	if err := c.link.SendDesired(version, body); err != nil {
		h.log.Warn("desired notification not delivered", "device", e.id, "error", err)
	}
}

// Connected reports whether deviceID has a connection.
func (h *Hub) Connected(deviceID string) bool {
	e, err := h.entry(deviceID)
	return err == nil && e.live.connected.Load()
}

// DeviceConnect checks that deviceID exists and is enabled.
func (h *Hub) deviceEnabled(e *entry) error {
	rec := e.rec.Load()
	if rec.Device.Status != iothub.StatusEnabled {
		return iothub.Errorf(iothub.IotHubUnauthorized, "device %s is disabled", e.id)
	}
	if rec.ModuleID != "" {
		// A module connects only while its device is enabled.
		d, err := h.entry(rec.Device.DeviceID)
		if err != nil {
			return iothub.Errorf(iothub.IotHubUnauthorized, "the device of module %s does not exist", e.id)
		}
		if d.rec.Load().Device.Status != iothub.StatusEnabled {
			return iothub.Errorf(iothub.IotHubUnauthorized, "device %s of module %s is disabled", rec.Device.DeviceID, e.id)
		}
	}
	return nil
}
