package hub_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// clock is a settable clock for the hub.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// feedbackOf takes the waiting feedback records' status codes by
// message id.
func feedbackOf(t *testing.T, h *testHub) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	recs, settle, err := h.TakeFeedback(ctx)
	if err != nil {
		t.Fatalf("no feedback: %v", err)
	}
	settle(true)
	out := map[string]string{}
	for _, r := range recs {
		out[r.OriginalMessageID] = r.StatusCode
	}
	return out
}

// Ensure the cloud-to-device lock rules of Azure for devices that receive
// over HTTPS or AMQP (next-wave-protocols §3.2): a received message is
// locked for the lock timeout and invisible meanwhile; abandon makes it
// visible again and its next delivery counts one more; a lock that has
// expired or was settled is 412 DeviceMessageLockLost; complete gives
// Success feedback and reject Rejected; past ten deliveries the message
// is dead-lettered with DeliveryCountExceeded.
func TestC2DLocks(t *testing.T) {
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := mustOpen(t, hub.Options{Now: clk.Now})
	mustDevice(t, h, "d1")
	for _, id := range []string{"m1", "m2", "m3"} {
		if _, err := h.SendC2D(ctx, "d1", hub.C2DMessage{MessageID: id, Ack: "full", Body: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	receive := func(want string, count int) hub.C2DMessage {
		t.Helper()
		m, ok, err := h.ReceiveC2D(ctx, "d1", 0)
		if err != nil || !ok || m.MessageID != want || m.DeliveryCount != count || m.Lock == "" {
			t.Fatalf("receive: %+v %v %v; want %s, delivery %d", m, ok, err, want, count)
		}
		return m
	}
	m1 := receive("m1", 1)
	m2 := receive("m2", 1)
	m3 := receive("m3", 1)
	if m, ok, _ := h.ReceiveC2D(ctx, "d1", 0); ok {
		t.Fatalf("a locked message was received again: %+v", m)
	}
	// Abandon: visible again, counted again, the old lock lost.
	if err := h.SettleC2D(ctx, "d1", m1.Lock, hub.C2DAbandon); err != nil {
		t.Fatal(err)
	}
	again := receive("m1", 2)
	if err := h.SettleC2D(ctx, "d1", m1.Lock, hub.C2DComplete); iothub.CodeOf(err) != iothub.DeviceMessageLockLost {
		t.Errorf("the abandoned delivery's lock: %v", err)
	}
	if err := h.SettleC2D(ctx, "d1", again.Lock, hub.C2DComplete); err != nil {
		t.Fatal(err)
	}
	if err := h.SettleC2D(ctx, "d1", again.Lock, hub.C2DComplete); iothub.CodeOf(err) != iothub.DeviceMessageLockLost {
		t.Errorf("completing twice: %v", err)
	}
	if err := h.SettleC2D(ctx, "d1", m2.Lock, hub.C2DReject); err != nil {
		t.Fatal(err)
	}
	if got := feedbackOf(t, h); got["m1"] != iothub.FeedbackSuccess || got["m2"] != iothub.FeedbackRejected || len(got) != 2 {
		t.Errorf("feedback %v", got)
	}
	// The lock timeout: m3's lock expires and it is delivered again.
	clk.Advance(hub.DefaultC2DLockTimeout + time.Second)
	if err := h.SettleC2D(ctx, "d1", m3.Lock, hub.C2DComplete); iothub.CodeOf(err) != iothub.DeviceMessageLockLost {
		t.Errorf("an expired lock: %v", err)
	}
	for n := 2; n <= hub.MaxC2DDeliveryCount; n++ {
		m := receive("m3", n)
		if err := h.SettleC2D(ctx, "d1", m.Lock, hub.C2DAbandon); err != nil {
			t.Fatal(err)
		}
	}
	if m, ok, err := h.ReceiveC2D(ctx, "d1", 0); ok || err != nil {
		t.Fatalf("an eleventh delivery: %+v %v", m, err)
	}
	if got := feedbackOf(t, h); got["m3"] != iothub.FeedbackDeliveryCountExceeded {
		t.Errorf("feedback %v", got)
	}
	if d, _ := h.Device("d1"); d.CloudToDeviceMessageCount != 0 {
		t.Errorf("%d messages left", d.CloudToDeviceMessageCount)
	}
}

// Ensure that feedback records are durable: a record survives a restart
// until a receiver accepts it, and a batch the receiver does not accept
// is taken again first.
func TestFeedbackDurable(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "d1")
	for _, id := range []string{"m1", "m2"} {
		h.SendC2D(ctx, "d1", hub.C2DMessage{MessageID: id, Ack: "full", Body: []byte(id)})
		m, _, _ := h.ReceiveC2D(ctx, "d1", 0)
		if err := h.SettleC2D(ctx, "d1", m.Lock, hub.C2DComplete); err != nil {
			t.Fatal(err)
		}
	}
	h.reopen(t)
	recs, settle, err := h.TakeFeedback(ctx)
	if err != nil || len(recs) != 2 || recs[0].OriginalMessageID != "m1" {
		t.Fatalf("after a restart: %+v, %v", recs, err)
	}
	settle(false)
	recs, settle, _ = h.TakeFeedback(ctx)
	if len(recs) != 2 {
		t.Fatalf("a batch not accepted came back as %+v", recs)
	}
	settle(true)
	h.reopen(t)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if recs, _, err := h.TakeFeedback(short); err == nil {
		t.Fatalf("accepted records came back: %+v", recs)
	}
}
