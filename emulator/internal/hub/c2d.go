package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Cloud-to-device limits (device-protocol §9.2) and lock rules
// (next-wave-protocols §3.2): a message a device receives over HTTPS or
// AMQP is locked for the lock timeout, then completed, rejected or
// abandoned with its lock token, or visible again when the lock expires;
// the eleventh delivery dead-letters it.
const (
	MaxC2DQueue           = 50
	MaxC2DSize            = 64 * 1024
	DefaultC2DTTL         = time.Hour
	DefaultC2DLockTimeout = time.Minute
	MaxC2DDeliveryCount   = 10
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
	// Lock is the lock token of the current delivery over HTTPS or AMQP,
	// valid until LockedUntil; DeliveryCount counts those deliveries.
	Lock          string    `json:"lock,omitempty"`
	LockedUntil   time.Time `json:"lockedUntil,omitzero"`
	DeliveryCount int       `json:"deliveryCount,omitempty"`
	// SequenceNumber numbers the device's messages in the order sent.
	SequenceNumber int64 `json:"sequenceNumber,omitempty"`
}

// C2DOutcome is how a device settles a locked message.
type C2DOutcome int

// The outcomes.
const (
	C2DComplete C2DOutcome = iota // done: Success feedback
	C2DReject                     // dead-lettered: Rejected feedback
	C2DAbandon                    // visible again, its delivery counted
)

// ReceiveC2D locks the device's oldest message that is neither expired
// nor locked, for lockTimeout (zero means a minute), and returns it with
// its new lock token and delivery count; false when there is none. A
// message delivered MaxC2DDeliveryCount times is dead-lettered instead,
// with DeliveryCountExceeded feedback, and expired ones with Expired.
func (h *Hub) ReceiveC2D(ctx context.Context, deviceID string, lockTimeout time.Duration) (C2DMessage, bool, error) {
	if lockTimeout <= 0 {
		lockTimeout = DefaultC2DLockTimeout
	}
	e, err := h.c2dEntry(deviceID)
	if err != nil {
		return C2DMessage{}, false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := h.now()
	next := e.clone()
	next.C2D = next.C2D[:0:0]
	type ended struct {
		m              C2DMessage
		status, reason string
	}
	var dead []ended
	var got *C2DMessage
	for _, m := range e.rec.Load().C2D {
		switch {
		case !now.Before(m.ExpiryTime):
			dead = append(dead, ended{m, iothub.FeedbackExpired, "Message expired"})
			continue
		case got == nil && !m.LockedUntil.After(now) && m.DeliveryCount >= MaxC2DDeliveryCount:
			dead = append(dead, ended{m, iothub.FeedbackDeliveryCountExceeded, "Message delivery count exceeded"})
			continue
		case got == nil && !m.LockedUntil.After(now):
			m.Lock, m.LockedUntil = newLockToken(), now.Add(lockTimeout)
			m.DeliveryCount++
			got = &m
		}
		next.C2D = append(next.C2D, m)
	}
	if got == nil && len(dead) == 0 {
		return C2DMessage{}, false, nil
	}
	next.Device.CloudToDeviceMessageCount = len(next.C2D)
	if err := h.commitLocked(e, next); err != nil {
		return C2DMessage{}, false, err
	}
	for _, d := range dead {
		h.addFeedback(e, d.m, d.status, d.reason)
	}
	if got == nil {
		return C2DMessage{}, false, nil
	}
	return *got, true, nil
}

// SettleC2D completes, rejects or abandons the message that lock locks.
// A lock that has expired, or names no message, is 412
// DeviceMessageLockLost.
func (h *Hub) SettleC2D(ctx context.Context, deviceID, lock string, outcome C2DOutcome) error {
	e, err := h.c2dEntry(deviceID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := h.now()
	next := e.clone()
	next.C2D = next.C2D[:0:0]
	var settled *C2DMessage
	for _, m := range e.rec.Load().C2D {
		if settled == nil && lock != "" && m.Lock == lock && m.LockedUntil.After(now) {
			settled = &m
			if outcome != C2DAbandon {
				continue
			}
			m.Lock, m.LockedUntil = "", time.Time{}
		}
		next.C2D = append(next.C2D, m)
	}
	if settled == nil {
		return iothub.Errorf(iothub.DeviceMessageLockLost, "The lock token %q does not lock a message of device %s: it expired, or the message was settled.", lock, deviceID)
	}
	next.Device.CloudToDeviceMessageCount = len(next.C2D)
	if err := h.commitLocked(e, next); err != nil {
		return err
	}
	switch outcome {
	case C2DComplete:
		h.addFeedback(e, *settled, iothub.FeedbackSuccess, "Success")
	case C2DReject:
		h.addFeedback(e, *settled, iothub.FeedbackRejected, "Message rejected")
	case C2DAbandon:
		h.deliverC2DLocked(e) // visible again, to an MQTT connection too
	}
	return nil
}

// c2dEntry is a device's entry, refusing modules, which have no
// cloud-to-device queue.
func (h *Hub) c2dEntry(deviceID string) (*entry, error) {
	e, err := h.entry(deviceID)
	if err != nil {
		return nil, err
	}
	if e.rec.Load().ModuleID != "" {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "modules cannot receive cloud-to-device messages")
	}
	return e, nil
}

func newLockToken() string {
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	b := hex.EncodeToString(tok[:])
	// A GUID, as Azure's lock tokens are.
	return b[:8] + "-" + b[8:12] + "-" + b[12:16] + "-" + b[16:20] + "-" + b[20:]
}

// SendC2D queues a message for a device and delivers it if the device is
// connected and subscribed. A device holds at most 50 pending messages
// (403 DeviceMaximumQueueDepthExceeded); expired ones are dropped
// (device-protocol §9). Modules cannot receive cloud-to-device messages.
func (h *Hub) SendC2D(ctx context.Context, deviceID string, m C2DMessage) (C2DMessage, error) {
	e, err := h.c2dEntry(deviceID)
	if err != nil {
		return C2DMessage{}, err
	}
	if len(m.Body) > MaxC2DSize {
		return C2DMessage{}, iothub.Errorf(iothub.MessageTooLarge, "the message is %d bytes; the limit is %d", len(m.Body), MaxC2DSize)
	}
	if err := h.Admit(ctx, iothub.OpC2DSend, deviceID, len(m.Body)); errors.Is(err, ErrDropped) {
		return m, nil
	} else if err != nil {
		return C2DMessage{}, err
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
	next.C2DSequence++
	m.SequenceNumber = next.C2DSequence
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
		if !now.Before(m.ExpiryTime) || m.LockedUntil.After(now) || !c.markSent(m.LockToken) {
			continue // expired, locked by an HTTPS or AMQP receive, or sent already
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
