package amqp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// client is a minimal AMQP 1.0 client for the tests: one session on
// channel 0, frames written and read one at a time.
type client struct {
	t    *testing.T
	conn *tls.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, e *emulatortest.Env, sasl bool) *client {
	t.Helper()
	conn, err := tls.Dial("tcp", e.AMQPAddr(), e.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	if sasl {
		c.header(3)
		if d := c.next(1); d.Code() != 0x40 {
			t.Fatalf("sasl-mechanisms: %#v", d)
		}
		c.frame(1, 0x41, amqp.Symbol("ANONYMOUS"))
		if d := c.next(1); d.Code() != 0x44 || d.Value.([]any)[0] != uint8(0) {
			t.Fatalf("sasl-outcome: %#v", d)
		}
	}
	c.header(0)
	c.frame(0, 0x10, "test-client", "localhost", uint32(512))
	c.expect(0x10)
	c.frame(0, 0x11, nil, uint32(0), uint32(100), uint32(100))
	c.expect(0x11)
	return c
}

func (c *client) header(proto byte) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte{'A', 'M', 'Q', 'P', proto, 1, 0, 0}); err != nil {
		c.t.Fatal(err)
	}
	var h [8]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil || h[4] != proto {
		c.t.Fatalf("protocol header % x, %v", h, err)
	}
}

func (c *client) frame(typ byte, code uint64, fields ...any) { c.frameWith(typ, code, nil, fields...) }

func (c *client) frameWith(typ byte, code uint64, payload []byte, fields ...any) {
	c.t.Helper()
	b, err := amqp.AppendFrame(nil, typ, 0, amqp.Describe(code, fields), payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// next reads frames, skipping heartbeats, until a performative.
func (c *client) next(typ byte) *amqp.Described {
	c.t.Helper()
	d, _ := c.nextWithPayload(typ)
	return d
}

func (c *client) nextWithPayload(typ byte) (*amqp.Described, []byte) {
	c.t.Helper()
	for {
		got, _, body, err := amqp.ReadFrame(c.r, 1<<20)
		if err != nil {
			c.t.Fatalf("read frame: %v", err)
		}
		if len(body) == 0 {
			continue
		}
		v, rest, err := amqp.Decode(body)
		if err != nil || got != typ {
			c.t.Fatalf("frame type %d: %v", got, err)
		}
		return v.(*amqp.Described), rest
	}
}

func (c *client) expect(code uint64) []any {
	c.t.Helper()
	d := c.next(0)
	if d.Code() != code {
		c.t.Fatalf("got performative %#x %#v, want %#x", d.Code(), d.Value, code)
	}
	return d.Value.([]any)
}

func terminus(code uint64, addr string) *amqp.Described {
	return &amqp.Described{Descriptor: code, Value: []any{addr}}
}

// message encodes properties (by position), application properties and a
// body section.
func message(props []any, app map[any]any, body *amqp.Described) []byte {
	b, _ := amqp.Append(nil, &amqp.Described{Descriptor: uint64(0x73), Value: props})
	if app != nil {
		b, _ = amqp.Append(b, &amqp.Described{Descriptor: uint64(0x74), Value: app})
	}
	b, _ = amqp.Append(b, body)
	return b
}

// putToken attaches the $cbs links (handles 0 and 1) and puts token,
// returning the status the hub answered.
func (c *client) putToken(token string) int32 {
	c.t.Helper()
	c.frame(0, 0x12, "cbs-sender", uint32(0), false, nil, nil, terminus(0x28, ""), terminus(0x29, "$cbs"))
	c.expect(0x12)
	c.expect(0x13) // credit
	c.frame(0, 0x12, "cbs-receiver", uint32(1), true, nil, nil, terminus(0x28, "$cbs"), terminus(0x29, ""))
	c.expect(0x12)
	c.frame(0, 0x13, uint32(0), uint32(100), uint32(0), uint32(100), uint32(1), uint32(0), uint32(10))
	msg := message([]any{"req-1", nil, "$cbs", nil, "cbs"},
		map[any]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": "localhost"},
		&amqp.Described{Descriptor: uint64(0x77), Value: token})
	c.frameWith(0, 0x14, msg, uint32(0), uint32(0), []byte{0}, uint32(0), false)
	// The reply and the request's disposition come in either order.
	var status int32
	for disposed, replied := false, false; !disposed || !replied; {
		d, payload := c.nextWithPayload(0)
		switch d.Code() {
		case 0x15:
			disposed = true
		case 0x14:
			replied = true
			v, rest, _ := amqp.Decode(payload)
			if props := v.(*amqp.Described).Value.([]any); props[5] != "req-1" {
				c.t.Fatalf("reply correlation %#v", props)
			}
			app, _, _ := amqp.Decode(rest)
			status = app.(*amqp.Described).Value.(map[any]any)["status-code"].(int32)
		default:
			c.t.Fatalf("unexpected %#x", d.Code())
		}
	}
	return status
}

// send transfers one message on the c2d link (handle 2) and returns the
// outcome's descriptor and error condition.
func (c *client) send(id uint32, msg []byte) (uint64, string) {
	c.t.Helper()
	c.frameWith(0, 0x14, msg, uint32(2), id, []byte{byte(id)}, uint32(0), false)
	d := c.expect(0x15)
	outcome := d[4].(*amqp.Described)
	if outcome.Code() == 0x25 {
		e := outcome.Value.([]any)[0].(*amqp.Described).Value.([]any)
		return 0x25, string(e[0].(amqp.Symbol))
	}
	return outcome.Code(), ""
}

// Ensure that a service client authenticates with a token on $cbs and
// sends cloud-to-device messages that reach the device over MQTT, and that
// unauthenticated sends, unknown devices and bad tokens are refused.
func TestCloudToDevice(t *testing.T) {
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "d1")
	got := make(chan string, 2)
	dev, err := iotdevice.New(cs, iotdevice.Options{CAFile: e.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	dev.OnC2D(func(body []byte, p topic.Properties) {
		v, _ := p.Get("priority")
		got <- string(body) + " " + v
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dev.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)

	c := dial(t, e, true)
	if status := c.putToken("SharedAccessSignature sr=localhost&sig=bad&se=1&skn=iothubowner"); status != 401 {
		t.Fatalf("bad token answered %d", status)
	}
	c.frame(0, 0x12, "c2d", uint32(2), false, nil, nil, terminus(0x28, ""), terminus(0x29, "/messages/devicebound"))
	c.expect(0x12)
	c.expect(0x13)
	toD1 := message([]any{"m1", nil, "/devices/d1/messages/devicebound"}, map[any]any{"priority": "high"},
		&amqp.Described{Descriptor: uint64(0x75), Value: []byte("hello")})
	if outcome, cond := c.send(0, toD1); cond != "amqp:unauthorized-access" {
		t.Fatalf("send before put-token: %#x %s", outcome, cond)
	}

	svc := e.ServiceString()
	tok, _ := sas.New(svc.HostName, svc.SharedAccessKeyName, svc.SharedAccessKey, time.Now().Add(time.Hour))
	c2 := dial(t, e, false)
	if status := c2.putToken(tok.String()); status != 200 {
		t.Fatalf("put-token answered %d", status)
	}
	c2.frame(0, 0x12, "c2d", uint32(2), false, nil, nil, terminus(0x28, ""), terminus(0x29, "/messages/devicebound"))
	c2.expect(0x12)
	c2.expect(0x13)
	if outcome, cond := c2.send(1, toD1); outcome != 0x24 {
		t.Fatalf("send: %#x %s", outcome, cond)
	}
	select {
	case m := <-got:
		if m != "hello high" {
			t.Fatalf("device got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the device got nothing")
	}
	ghost := message([]any{"m2", nil, "/devices/ghost/messages/devicebound"}, nil, &amqp.Described{Descriptor: uint64(0x75), Value: []byte("x")})
	if _, cond := c2.send(2, ghost); cond != "amqp:not-found" {
		t.Fatalf("unknown device: %s", cond)
	}

	// A malformed frame closes that connection only.
	if _, err := c.conn.Write([]byte{0, 0, 0, 9, 2, 0, 0, 0, 0x99}); err != nil {
		t.Fatal(err)
	}
	if d := c.expect(0x18); len(d) == 0 {
		t.Fatal("close without an error")
	}
	if outcome, _ := c2.send(3, toD1); outcome != 0x24 {
		t.Fatalf("the other connection stopped working: %#x", outcome)
	}
}

// Ensure that feedback reaches a client's feedback link in batches, each a
// JSON array, split into frames no larger than the client's 512 bytes.
func TestFeedbackLink(t *testing.T) {
	e := emulatortest.Start(t)
	// Long ids make every record larger than a 512-byte frame.
	id := strings.Repeat("d", 120)
	e.AddDevice(t, id)
	svc := e.Service(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		mid := fmt.Sprintf("message-%d-%s", i, strings.Repeat("m", 100))
		if err := svc.SendC2D(ctx, id, iothub.CloudToDeviceMessage{Body: "x", MessageID: mid, Ack: "full"}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, e, false)
	c.frame(0, 0x12, "feedback", uint32(0), true, nil, nil, terminus(0x28, "/messages/serviceBound/feedback"), terminus(0x29, ""))
	c.expect(0x12)
	c.frame(0, 0x13, uint32(0), uint32(100), uint32(0), uint32(100), uint32(0), uint32(0), uint32(10))
	if _, err := svc.PurgeC2D(ctx, id); err != nil {
		t.Fatal(err)
	}
	var recs []iothub.FeedbackRecord
	most := 0 // frames of the longest message
	for len(recs) < 5 {
		var body []byte
		frames := 0
		for {
			d, payload := c.nextWithPayload(0)
			if d.Code() != 0x14 {
				t.Fatalf("unexpected %#x", d.Code())
			}
			frames++
			body = append(body, payload...)
			if more, _ := field(d.Value.([]any), 5).(bool); !more {
				break
			}
		}
		most = max(most, frames)
		var data []byte
		for rest := body; len(rest) > 0; {
			v, r, err := amqp.Decode(rest)
			if err != nil {
				t.Fatal(err)
			}
			if d := v.(*amqp.Described); d.Code() == 0x75 {
				data = d.Value.([]byte)
			}
			rest = r
		}
		var batch []iothub.FeedbackRecord
		if err := json.Unmarshal(data, &batch); err != nil || len(batch) == 0 || batch[0].StatusCode != iothub.FeedbackPurged {
			t.Fatalf("feedback %s: %v", data, err)
		}
		recs = append(recs, batch...)
	}
	if len(recs) != 5 {
		t.Fatalf("%d records", len(recs))
	}
	if most < 2 {
		t.Fatal("no message was split for a client that takes 512-byte frames")
	}
}

func field(l []any, i int) any {
	if i < len(l) {
		return l[i]
	}
	return nil
}

// Ensure that performatives with missing fields close the connection
// instead of crashing the hub.
func TestEmptyPerformatives(t *testing.T) {
	e := emulatortest.Start(t)
	for _, code := range []uint64{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17} {
		c := dial(t, e, false)
		c.frame(0, code)
		c.frame(0, 0x18)
		for c.next(0).Code() != 0x18 {
		}
	}
	// A performative that is not a described list.
	c := dial(t, e, false)
	b, _ := amqp.Append(make([]byte, 8), "not a performative")
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	b[4] = 2
	if _, err := c.conn.Write(b); err != nil {
		t.Fatal(err)
	}
	c.expect(0x18)
	// The hub still serves.
	dial(t, e, true)
}

// Ensure that a refused link (file notifications) ends with the usual
// detach exchange and leaves the connection usable.
func TestRefusedLink(t *testing.T) {
	e := emulatortest.Start(t)
	c := dial(t, e, false)
	c.frame(0, 0x12, "files", uint32(5), true, nil, nil, terminus(0x28, "/messages/serviceBound/filenotifications"), terminus(0x29, ""))
	c.expect(0x12)
	d := c.expect(0x16)
	if errv, ok := d[2].(*amqp.Described); !ok || errv.Value.([]any)[0] != amqp.Symbol("amqp:not-implemented") {
		t.Fatalf("detach %#v", d)
	}
	c.frame(0, 0x16, uint32(5), true) // the client's half
	svc := e.ServiceString()
	tok, _ := sas.New(svc.HostName, svc.SharedAccessKeyName, svc.SharedAccessKey, time.Now().Add(time.Hour))
	if status := c.putToken(tok.String()); status != 200 {
		t.Fatalf("put-token after a refusal answered %d", status)
	}
}
