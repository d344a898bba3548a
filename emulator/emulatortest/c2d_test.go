package emulatortest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// Ensure that cloud-to-device messages reach the device in order on its
// devicebound topic with the hub's property bag, wait in a durable queue
// while it is offline, leave the queue when acknowledged, and that the
// queue holds at most 50 (device-protocol §7.3, §9).
func TestC2D(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	cs := e.AddDevice(t, "c2d")
	pending := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			d, _ := svc.Device(ctx, "c2d")
			if d.CloudToDeviceMessageCount == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("pending count %d, want %d", d.CloudToDeviceMessageCount, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	exp := iothub.NewTime(time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := svc.SendC2D(ctx, "c2d", iothub.CloudToDeviceMessage{Body: "first", MessageID: "m-1", Properties: map[string]string{"color": "red/blue"}, ExpiryTimeUTC: &exp}); err != nil {
		t.Fatal(err)
	}
	pending(1)
	msgs := make(chan paho.Message, 4)
	c, err := rawClient(t, e, cs, raw{msgs: msgs})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(topic.FilterC2D("c2d"), 1, nil).Wait()
	m := recv(t, msgs)
	want := "devices/c2d/messages/devicebound/%24.mid=m-1&%24.to=%2Fdevices%2Fc2d%2Fmessages%2Fdevicebound&%24.exp=2099-01-02T03%3A04%3A05.0000000Z&iothub-ack=none&color=red%2Fblue"
	if m.Topic() != want || string(m.Payload()) != "first" || m.Qos() != 1 {
		t.Fatalf("got %s %q qos %d\nwant %s", m.Topic(), m.Payload(), m.Qos(), want)
	}
	pending(0) // paho acknowledged it
	c.Disconnect(0)

	for i := 0; i < hub.MaxC2DQueue; i++ {
		if err := svc.SendC2D(ctx, "c2d", iothub.CloudToDeviceMessage{Body: strings.Repeat("x", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	err = svc.SendC2D(ctx, "c2d", iothub.CloudToDeviceMessage{Body: "one too many"})
	wantCode(t, err, iothub.DeviceMaximumQueueDepthExceeded)
	n, err := svc.PurgeC2D(ctx, "c2d")
	if err != nil || n != hub.MaxC2DQueue {
		t.Fatalf("purged %d, %v", n, err)
	}
	pending(0)

	// Queued while offline, kept across a restart, delivered to the Go
	// client in order.
	svc.SendC2D(ctx, "c2d", iothub.CloudToDeviceMessage{Body: "a"})
	svc.SendC2D(ctx, "c2d", iothub.CloudToDeviceMessage{Body: "b"})
	e = e.Restart(t)
	svc = e.Service(t)
	got := make(chan string, 4)
	dev, err := iotdevice.New(cs, iotdevice.Options{CAFile: e.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	dev.OnC2D(func(body []byte, _ topic.Properties) { got <- string(body) })
	if err := dev.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	var order []string
	for len(order) < 2 {
		select {
		case g := <-got:
			order = append(order, g)
		case <-time.After(5 * time.Second):
			t.Fatalf("received %v", order)
		}
	}
	if order[0] != "a" || order[1] != "b" {
		t.Fatalf("order %v", order)
	}
	pending(0)
}

// Ensure that a message sent with iothub-ack gets the feedback its sender
// asked for: a completed one Success, a purged one Purged, an expired one
// Expired, and nothing for outcomes it did not ask about.
func TestC2DFeedback(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	cs := e.AddDevice(t, "fb")
	for id, ack := range map[string]string{"purged-full": "full", "purged-positive": "positive", "purged-negative": "negative"} {
		if err := svc.SendC2D(ctx, "fb", iothub.CloudToDeviceMessage{Body: "x", MessageID: id, Ack: ack}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.PurgeC2D(ctx, "fb"); err != nil {
		t.Fatal(err)
	}
	soon := iothub.NewTime(time.Now().Add(time.Second))
	if err := svc.SendC2D(ctx, "fb", iothub.CloudToDeviceMessage{Body: "z", MessageID: "expired", Ack: "negative", ExpiryTimeUTC: &soon}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(soon.Time) + 50*time.Millisecond)
	// The next message drops the expired one.
	if err := svc.SendC2D(ctx, "fb", iothub.CloudToDeviceMessage{Body: "y", MessageID: "done", Ack: "positive"}); err != nil {
		t.Fatal(err)
	}
	dev, err := iotdevice.New(cs, iotdevice.Options{CAFile: e.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	dev.OnC2D(func([]byte, topic.Properties) {})
	if err := dev.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	got := map[string]string{}
	for len(got) < 4 {
		recs, settle, err := e.Hub().TakeFeedback(ctx)
		if err != nil {
			t.Fatalf("feedback so far %v: %v", got, err)
		}
		settle(true)
		for _, r := range recs {
			if r.DeviceID != "fb" || r.DeviceGenerationID == "" {
				t.Fatalf("record %+v", r)
			}
			got[r.OriginalMessageID] = r.StatusCode
		}
	}
	want := map[string]string{"purged-full": "Purged", "purged-negative": "Purged", "expired": "Expired", "done": "Success"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("feedback %v, want %v", got, want)
	}
}

// Ensure that the service client keeps its AMQP connection between sends
// and dials again when the hub has dropped it (here, by restarting).
func TestC2DReconnect(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	e.AddDevice(t, "rc")
	for _, body := range []string{"one", "two"} {
		if err := svc.SendC2D(ctx, "rc", iothub.CloudToDeviceMessage{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	e = e.Restart(t)
	if err := svc.SendC2D(ctx, "rc", iothub.CloudToDeviceMessage{Body: "three"}); err != nil {
		t.Fatalf("send after the hub restarted: %v", err)
	}
	if d, err := e.Service(t).Device(ctx, "rc"); err != nil || d.CloudToDeviceMessageCount != 3 {
		t.Fatalf("pending %d, %v", d.CloudToDeviceMessageCount, err)
	}
}

// Ensure that a device whose cloud-to-device subscription was granted
// QoS 0 receives at QoS 0, and that the message is complete once sent:
// it leaves the queue without a PUBACK and is not sent again on the next
// connection (at most once, device-protocol §5.2).
func TestC2DAtMostOnce(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	ctx := testCtx(t)
	svc := e.Service(t)
	cs := e.AddDevice(t, "qos0")
	msgs := make(chan paho.Message, 4)
	c, err := rawClient(t, e, cs, raw{msgs: msgs})
	if err != nil {
		t.Fatal(err)
	}
	if tk := c.Subscribe(topic.FilterC2D("qos0"), 0, nil); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	if err := svc.SendC2D(ctx, "qos0", iothub.CloudToDeviceMessage{Body: "once at most"}); err != nil {
		t.Fatal(err)
	}
	m := recv(t, msgs)
	if m.Qos() != 0 || string(m.Payload()) != "once at most" {
		t.Fatalf("got %q at QoS %d", m.Payload(), m.Qos())
	}
	eventually(t, "the message leaves the queue", func() error {
		d, err := svc.Device(ctx, "qos0")
		if err != nil || d.CloudToDeviceMessageCount != 0 {
			return fmt.Errorf("%d queued, %v", d.CloudToDeviceMessageCount, err)
		}
		return nil
	})
	c.Disconnect(0)
	again, err := rawClient(t, e, cs, raw{msgs: msgs})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Disconnect(0)
	again.Subscribe(topic.FilterC2D("qos0"), 1, nil).WaitTimeout(10 * time.Second)
	if err := svc.SendC2D(ctx, "qos0", iothub.CloudToDeviceMessage{Body: "at least once"}); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, msgs); string(m.Payload()) != "at least once" || m.Qos() != 1 {
		t.Fatalf("after a QoS 1 subscription: %q at QoS %d (the first message must not come back)", m.Payload(), m.Qos())
	}
}
