package amqp_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// putDeviceToken puts a device's token on $cbs (links 0 and 1) under
// the audience Node sends, percent-encoded, and returns the status.
func (c *client) putDeviceToken(audience, token string) int32 {
	c.t.Helper()
	c.attach("cbs-sender", 0, false, "", "$cbs")
	next[*amqp.Flow](c)
	c.attach("cbs-receiver", 1, true, "$cbs", "")
	c.credit(1, 10)
	msg := encode(c.t, &amqp.Message{
		Properties:            &amqp.Properties{MessageID: "req-1", To: "$cbs", ReplyTo: "cbs"},
		ApplicationProperties: map[any]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": audience},
		Value:                 token, HasValue: true,
	})
	c.frame(&amqp.Transfer{Handle: 0, DeliveryID: u32(0), DeliveryTag: []byte{0}, MessageFormat: u32(0)}, msg)
	// The reply and the request's disposition come in either order.
	var status int32
	for disposed, replied := false, false; !disposed || !replied; {
		switch p, payload := c.read(); p.(type) {
		case *amqp.Disposition:
			disposed = true
		case *amqp.Transfer:
			replied = true
			m, _ := amqp.UnmarshalMessage(payload)
			status = m.ApplicationProperties["status-code"].(int32)
		}
	}
	return status
}

// Ensure that a device's token admits it to its own links only: another
// device's telemetry address is refused, a message over 256 KB is
// rejected, a good one accepted and stored, and a wrong token refused.
func TestDeviceLinks(t *testing.T) {
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "d1")
	e.AddDevice(t, "d2")
	c := dial(t, e, true)
	bad, _ := sas.New(sas.DeviceResource("localhost", "d1", ""), "", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", time.Now().Add(time.Hour))
	if status := c.putDeviceToken("localhost%2Fdevices%2Fd1", bad.String()); status != 401 {
		t.Fatalf("a wrong key: put-token answered %d", status)
	}
	c = dial(t, e, true)
	tok, _ := sas.New(sas.DeviceResource("localhost", "d1", ""), "", cs.SharedAccessKey, time.Now().Add(time.Hour))
	if status := c.putDeviceToken("localhost%2Fdevices%2Fd1", tok.String()); status != 200 {
		t.Fatalf("put-token answered %d", status)
	}
	if a := c.attach("other", 2, false, "", "/devices/d2/messages/events"); a.Target != nil {
		t.Fatal("a link to another device's telemetry was accepted")
	}
	if d := next[*amqp.Detach](c); d.Error == nil || d.Error.Condition != "amqp:unauthorized-access" {
		t.Fatalf("detach %#v", d)
	}
	c.frame(&amqp.Detach{Handle: 2, Closed: true}, nil)
	if a := c.attach("events", 3, false, "", "amqps://localhost/devices/d1/messages/events"); a.Target == nil {
		t.Fatal("the device's own telemetry link was refused")
	}
	next[*amqp.Flow](c)
	// A message over 256 KB, in frames of the size the engine accepts.
	big := encode(t, &amqp.Message{Data: [][]byte{bytes.Repeat([]byte("x"), 257*1024)}})
	half := len(big) / 2
	c.frame(&amqp.Transfer{Handle: 3, DeliveryID: u32(1), DeliveryTag: []byte{1}, MessageFormat: u32(0), More: true}, big[:half])
	c.frame(&amqp.Transfer{Handle: 3}, big[half:])
	if d := next[*amqp.Disposition](c); d.State == nil {
		t.Fatal("no outcome")
	} else if r, ok := d.State.(*amqp.Rejected); !ok || r.Error.Condition != "amqp:link:message-size-exceeded" {
		t.Fatalf("an oversized message: %#v", d.State)
	}
	ok := encode(t, &amqp.Message{Properties: &amqp.Properties{MessageID: "m1"}, ApplicationProperties: map[any]any{"k": "v"}, Data: [][]byte{[]byte("hi")}})
	c.frame(&amqp.Transfer{Handle: 3, DeliveryID: u32(2), DeliveryTag: []byte{2}, MessageFormat: u32(0)}, ok)
	if d := next[*amqp.Disposition](c); d.State == nil {
		t.Fatal("no outcome")
	} else if _, accepted := d.State.(*amqp.Accepted); !accepted {
		t.Fatalf("a good message: %#v", d.State)
	}
	msgs, err := e.Hub().Messages("d1", 10)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "hi" || msgs[0].Properties["$.mid"] != "m1" || msgs[0].Properties["k"] != "v" {
		t.Fatalf("stored %+v, %v", msgs, err)
	}
}

// Ensure cloud-to-device over AMQP as C# settles it (rcv-settle-mode
// second): the message comes unsettled with a 16-byte delivery tag and
// its lock token, the device's unsettled accepted is answered with a
// settled accepted, and the message is complete.
func TestDeviceC2DSettleSecond(t *testing.T) {
	e, c := deviceClient(t)
	second := uint8(1)
	c.frame(&amqp.Attach{Name: "c2d", Handle: 2, Role: amqp.RoleReceiver, RcvSettleMode: &second,
		Source: &amqp.Source{Address: "amqps://localhost:5671/devices/d1/messages/deviceBound"}, Target: &amqp.Target{Address: "d1"}}, nil)
	if a := next[*amqp.Attach](c); a.Source == nil {
		t.Fatal("the device-bound link was refused")
	}
	c.credit(2, 1)
	if _, err := e.Hub().SendC2D(testContext(t), "d1", c2dFor("hello")); err != nil {
		t.Fatal(err)
	}
	p, payload := c.read()
	tr, ok := p.(*amqp.Transfer)
	if !ok || tr.Settled || len(tr.DeliveryTag) != 16 || tr.DeliveryID == nil {
		t.Fatalf("transfer %#v", p)
	}
	m, err := amqp.UnmarshalMessage(payload)
	if err != nil || string(m.Body()) != "hello" || amqp.AsString(m.MessageAnnotations[amqp.Symbol("x-opt-lock-token")]) == "" {
		t.Fatalf("message %#v, %v", m, err)
	}
	c.frame(&amqp.Disposition{Role: amqp.RoleReceiver, First: *tr.DeliveryID, State: &amqp.Accepted{}}, nil)
	d := next[*amqp.Disposition](c)
	if _, acc := d.State.(*amqp.Accepted); !acc || !d.Settled || d.Role != amqp.RoleSender {
		t.Fatalf("the hub's answer %#v", d)
	}
	if dev, _ := e.Hub().Device("d1"); dev.CloudToDeviceMessageCount != 0 {
		t.Fatalf("%d messages left", dev.CloudToDeviceMessageCount)
	}
}

// deviceClient starts an emulator with device d1 and connects as d1 with
// its token on $cbs, under the audience C# sends, not encoded.
func deviceClient(t *testing.T) (*emulatortest.Env, *client) {
	t.Helper()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "d1")
	c := dial(t, e, true)
	tok, _ := sas.New(sas.DeviceResource("localhost", "d1", ""), "", cs.SharedAccessKey, time.Now().Add(time.Hour))
	if status := c.putDeviceToken("localhost/devices/d1", tok.String()); status != 200 {
		t.Fatalf("put-token answered %d", status)
	}
	return e, c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func c2dFor(body string) hub.C2DMessage { return hub.C2DMessage{Body: []byte(body)} }

// Ensure that a batch in C#'s format, each data section a whole message,
// is stored as its messages, each with its own properties.
func TestDeviceBatch(t *testing.T) {
	e, c := deviceClient(t)
	c.attach("events", 2, false, "", "/devices/d1/messages/events")
	next[*amqp.Flow](c)
	var sections [][]byte
	for _, id := range []string{"b1", "b2"} {
		sections = append(sections, encode(t, &amqp.Message{Properties: &amqp.Properties{MessageID: id}, Data: [][]byte{[]byte("body-" + id)}}))
	}
	batch := encode(t, &amqp.Message{Data: sections})
	format := uint32(amqp.BatchedMessageFormat)
	c.frame(&amqp.Transfer{Handle: 2, DeliveryID: u32(0), DeliveryTag: []byte{0}, MessageFormat: &format}, batch)
	if d := next[*amqp.Disposition](c); d.State == nil {
		t.Fatal("no outcome")
	} else if _, ok := d.State.(*amqp.Accepted); !ok {
		t.Fatalf("the batch: %#v", d.State)
	}
	msgs, err := e.Hub().Messages("d1", 10)
	if err != nil || len(msgs) != 2 || string(msgs[0].Body) != "body-b1" || msgs[1].Properties["$.mid"] != "b2" {
		t.Fatalf("stored %+v, %v", msgs, err)
	}
}
