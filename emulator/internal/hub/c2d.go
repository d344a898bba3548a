package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Cloud-to-device limits (device-protocol §9.2).
const (
	MaxC2DQueue   = 50
	MaxC2DSize    = 64 * 1024
	DefaultC2DTTL = time.Hour
)

// C2DMessage is a cloud-to-device message queued for a device.
type C2DMessage struct {
	// LockToken identifies the message inside the hub.
	LockToken       string            `json:"lockToken"`
	MessageID       string            `json:"messageId,omitempty"`
	CorrelationID   string            `json:"correlationId,omitempty"`
	UserID          string            `json:"userId,omitempty"`
	ContentType     string            `json:"contentType,omitempty"`
	ContentEncoding string            `json:"contentEncoding,omitempty"`
	Ack             string            `json:"ack,omitempty"` // iothub-ack: none, positive, negative, full
	Properties      map[string]string `json:"properties,omitempty"`
	Body            []byte            `json:"body"`
	EnqueuedTime    time.Time         `json:"enqueuedTime"`
	ExpiryTime      time.Time         `json:"expiryTime"`
	// ExpirySet says the sender chose ExpiryTime; only then does the
	// message carry $.exp (device-protocol §7.3).
	ExpirySet bool `json:"expirySet,omitempty"`
}

// SendC2D queues a message for a device and delivers it if the device is
// connected and subscribed. A device holds at most 50 pending messages
// (403 DeviceMaximumQueueDepthExceeded); expired ones are dropped
// (device-protocol §9). Modules cannot receive cloud-to-device messages.
func (h *Hub) SendC2D(ctx context.Context, deviceID string, m C2DMessage) (C2DMessage, error) {
	e, err := h.entry(deviceID)
	if err != nil {
		return C2DMessage{}, err
	}
	if e.rec.Load().ModuleID != "" {
		return C2DMessage{}, iothub.Errorf(iothub.ArgumentInvalid, "modules cannot receive cloud-to-device messages")
	}
	if len(m.Body) > MaxC2DSize {
		return C2DMessage{}, iothub.Errorf(iothub.MessageTooLarge, "the message is %d bytes; the limit is %d", len(m.Body), MaxC2DSize)
	}
	switch m.Ack {
	case "", "none", "positive", "negative", "full":
	default:
		return C2DMessage{}, iothub.Errorf(iothub.ArgumentInvalid, "ack must be none, positive, negative or full")
	}
	now := h.now()
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	m.LockToken, m.EnqueuedTime = hex.EncodeToString(tok[:]), now
	m.ExpirySet = !m.ExpiryTime.IsZero()
	if !m.ExpirySet {
		m.ExpiryTime = now.Add(DefaultC2DTTL)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.clone()
	next.C2D = unexpired(next.C2D, now)
	for _, old := range e.rec.Load().C2D {
		if !now.Before(old.ExpiryTime) {
			h.addFeedback(e, old, iothub.FeedbackExpired, "Message expired")
		}
	}
	if len(next.C2D) >= MaxC2DQueue {
		return C2DMessage{}, iothub.Errorf(iothub.DeviceMaximumQueueDepthExceeded, "Device %s has %d pending cloud-to-device messages, the maximum.", deviceID, MaxC2DQueue)
	}
	next.C2D = append(next.C2D, m)
	next.Device.CloudToDeviceMessageCount = len(next.C2D)
	if err := h.commitLocked(e, next); err != nil {
		return C2DMessage{}, err
	}
	h.deliverC2DLocked(e)
	return m, nil
}

func unexpired(q []C2DMessage, now time.Time) []C2DMessage {
	out := q[:0:0]
	for _, m := range q {
		if now.Before(m.ExpiryTime) {
			out = append(out, m)
		}
	}
	return out
}

// PurgeC2D deletes a device's pending messages and says how many
// (DELETE /devices/{id}/commands, service-api §3.10).
func (h *Hub) PurgeC2D(ctx context.Context, deviceID string) (int, error) {
	e, err := h.entry(deviceID)
	if err != nil {
		return 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.rec.Load().C2D)
	if n == 0 {
		return 0, nil
	}
	purged := e.rec.Load().C2D
	next := e.clone()
	next.C2D, next.Device.CloudToDeviceMessageCount = nil, 0
	if err := h.commitLocked(e, next); err != nil {
		return 0, err
	}
	for _, m := range purged {
		h.addFeedback(e, m, iothub.FeedbackPurged, "Message purged")
	}
	return n, nil
}

// deliverC2DLocked sends the device's pending messages that its connection
// has not been sent yet, oldest first; a message stays queued until the
// device acknowledges it, and is sent again on its next connection if it
// does not. The caller holds e.mu.
func (h *Hub) deliverC2DLocked(e *entry) {
	c, _ := e.current()
	if c == nil || !c.Subscribed(SubC2D) {
		return
	}
	now := h.now()
	for _, m := range e.rec.Load().C2D {
		if !now.Before(m.ExpiryTime) || !c.markSent(m.LockToken) {
			continue
		}
		if err := c.link.SendC2D(m); err != nil {
			h.log.Warn("cloud-to-device message not delivered", "device", e.id, "error", err)
			return
		}
	}
}

// deliverC2D is deliverC2DLocked for callers without e.mu.
func (h *Hub) deliverC2D(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h.deliverC2DLocked(e)
}

// CompleteC2D records the device's acknowledgement of a message: it leaves
// the queue for good (device-protocol §9.1: PUBACK completes).
func (c *Conn) CompleteC2D(lockToken string) {
	h, e := c.hub, c.e
	c.Touch()
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.rec.Load().C2D
	next := e.clone()
	next.C2D = next.C2D[:0:0]
	var done *C2DMessage
	for i, m := range cur {
		if m.LockToken != lockToken {
			next.C2D = append(next.C2D, m)
		} else {
			done = &cur[i]
		}
	}
	if done == nil {
		return
	}
	next.Device.CloudToDeviceMessageCount = len(next.C2D)
	if err := h.commitLocked(e, next); err != nil {
		h.log.Error("storing a completed cloud-to-device message failed", "device", e.id, "error", err)
		return
	}
	h.addFeedback(e, *done, iothub.FeedbackSuccess, "Success")
}

// markSent records that lockToken went to this connection; false if it
// already had.
func (c *Conn) markSent(lockToken string) bool {
	c.sentMu.Lock()
	defer c.sentMu.Unlock()
	if c.sent == nil {
		c.sent = map[string]bool{}
	}
	if c.sent[lockToken] {
		return false
	}
	c.sent[lockToken] = true
	return true
}
