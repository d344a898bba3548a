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

func u32(v uint32) *uint32 { return &v }

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
		next[*amqp.SASLMechanisms](c)
		c.frame(&amqp.SASLInit{Mechanism: "ANONYMOUS"}, nil)
		if o := next[*amqp.SASLOutcome](c); o.Code != amqp.SASLOK {
			t.Fatalf("sasl-outcome: %#v", o)
		}
	}
	c.header(0)
	c.frame(&amqp.Open{ContainerID: "test-client", Hostname: "localhost", MaxFrameSize: 512}, nil)
	next[*amqp.Open](c)
	c.frame(&amqp.Begin{IncomingWindow: 100, OutgoingWindow: 100}, nil)
	next[*amqp.Begin](c)
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

func (c *client) frame(p amqp.Performative, payload []byte) {
	c.t.Helper()
	b, err := amqp.AppendFrame(nil, 0, p, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read reads frames, skipping heartbeats, until a performative.
func (c *client) read() (amqp.Performative, []byte) {
	c.t.Helper()
	for {
		_, _, body, err := amqp.ReadFrame(c.r, 1<<20)
		if err != nil {
			c.t.Fatalf("read frame: %v", err)
		}
		if len(body) == 0 {
			continue
		}
		p, payload, err := amqp.Unmarshal(body)
		if err != nil {
			c.t.Fatalf("frame: %v", err)
		}
		return p, payload
	}
}

// next reads the next performative, which must be a P.
func next[P amqp.Performative](c *client) P {
	c.t.Helper()
	p, _ := c.read()
	want, ok := p.(P)
	if !ok {
		c.t.Fatalf("got %#v, want a %T", p, want)
	}
	return want
}

// attach attaches a link and reads the hub's attach.
func (c *client) attach(name string, handle uint32, receiver bool, source, target string) *amqp.Attach {
	c.t.Helper()
	a := &amqp.Attach{Name: name, Handle: handle, Role: receiver, Source: &amqp.Source{Address: source}, Target: &amqp.Target{Address: target}}
	if !receiver {
		a.InitialDeliveryCount = u32(0)
	}
	c.frame(a, nil)
	return next[*amqp.Attach](c)
}

// credit grants a receiving link credit.
func (c *client) credit(handle, n uint32) {
	c.frame(&amqp.Flow{IncomingWindow: 100, OutgoingWindow: 100, Handle: u32(handle), DeliveryCount: u32(0), LinkCredit: u32(n)}, nil)
}

func encode(t *testing.T, m *amqp.Message) []byte {
	b, err := m.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putToken attaches the $cbs links (handles 0 and 1) and puts token,
// returning the status the hub answered.
func (c *client) putToken(token string) int32 {
	c.t.Helper()
	c.attach("cbs-sender", 0, false, "", "$cbs")
	next[*amqp.Flow](c) // credit
	c.attach("cbs-receiver", 1, true, "$cbs", "")
	c.credit(1, 10)
	msg := encode(c.t, &amqp.Message{
		Properties:            &amqp.Properties{MessageID: "req-1", To: "$cbs", ReplyTo: "cbs"},
		ApplicationProperties: map[any]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": "localhost"},
		Value:                 token, HasValue: true,
	})
	c.frame(&amqp.Transfer{Handle: 0, DeliveryID: u32(0), DeliveryTag: []byte{0}, MessageFormat: u32(0)}, msg)
	// The reply and the request's disposition come in either order.
	var status int32
	for disposed, replied := false, false; !disposed || !replied; {
		p, payload := c.read()
		switch p.(type) {
		case *amqp.Disposition:
			disposed = true
		case *amqp.Transfer:
			replied = true
			m, err := amqp.UnmarshalMessage(payload)
			if err != nil || m.Properties.CorrelationID != "req-1" {
				c.t.Fatalf("reply %#v, %v", m, err)
			}
			status = m.ApplicationProperties["status-code"].(int32)
		default:
			c.t.Fatalf("unexpected %#v", p)
		}
	}
	return status
}

// send transfers one message on the c2d link (handle 2) and returns the
// outcome and its error condition.
func (c *client) send(id uint32, msg []byte) (amqp.DeliveryState, string) {
	c.t.Helper()
	c.frame(&amqp.Transfer{Handle: 2, DeliveryID: u32(id), DeliveryTag: []byte{byte(id)}, MessageFormat: u32(0)}, msg)
	d := next[*amqp.Disposition](c)
	if r, ok := d.State.(*amqp.Rejected); ok {
		return r, string(r.Error.Condition)
	}
	return d.State, ""
}

func c2dTo(id, messageID string, app map[any]any, body string) *amqp.Message {
	return &amqp.Message{Properties: &amqp.Properties{MessageID: messageID, To: "/devices/" + id + "/messages/devicebound"},
		ApplicationProperties: app, Data: [][]byte{[]byte(body)}}
}

func serviceToken(t *testing.T, e *emulatortest.Env) string {
	svc := e.ServiceString()
	tok, err := sas.New(svc.HostName, svc.SharedAccessKeyName, svc.SharedAccessKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
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
	c.attach("c2d", 2, false, "", "/messages/devicebound")
	next[*amqp.Flow](c)
	toD1 := encode(t, c2dTo("d1", "m1", map[any]any{"priority": "high"}, "hello"))
	if outcome, cond := c.send(0, toD1); cond != "amqp:unauthorized-access" {
		t.Fatalf("send before put-token: %#v %s", outcome, cond)
	}

	c2 := dial(t, e, false)
	if status := c2.putToken(serviceToken(t, e)); status != 200 {
		t.Fatalf("put-token answered %d", status)
	}
	c2.attach("c2d", 2, false, "", "/messages/deviceBound") // C# writes it so
	next[*amqp.Flow](c2)
	if outcome, cond := c2.send(1, toD1); cond != "" {
		t.Fatalf("send: %#v %s", outcome, cond)
	}
	select {
	case m := <-got:
		if m != "hello high" {
			t.Fatalf("device got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the device got nothing")
	}
	if _, cond := c2.send(2, encode(t, c2dTo("ghost", "m2", nil, "x"))); cond != "amqp:not-found" {
		t.Fatalf("unknown device: %s", cond)
	}

	// A malformed frame closes that connection only.
	if _, err := c.conn.Write([]byte{0, 0, 0, 9, 2, 0, 0, 0, 0x99}); err != nil {
		t.Fatal(err)
	}
	if cl := next[*amqp.Close](c); cl.Error == nil || cl.Error.Condition != "amqp:decode-error" {
		t.Fatalf("close %#v", cl)
	}
	if outcome, cond := c2.send(3, toD1); cond != "" {
		t.Fatalf("the other connection stopped working: %#v", outcome)
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
	// Without a token the feedback link is refused: records are the
	// service's to read.
	anon := dial(t, e, true)
	if a := anon.attach("feedback", 5, true, "/messages/serviceBound/feedback", ""); a.Source != nil {
		t.Fatalf("feedback attached without a token: %#v", a)
	}
	if d := next[*amqp.Detach](anon); d.Error == nil || d.Error.Condition != "amqp:unauthorized-access" {
		t.Fatalf("detach %#v", d)
	}
	c := dial(t, e, false)
	if status := c.putToken(serviceToken(t, e)); status != 200 {
		t.Fatalf("put-token answered %d", status)
	}
	c.attach("feedback", 2, true, "/messages/serviceBound/feedback", "")
	c.credit(2, 10)
	if _, err := svc.PurgeC2D(ctx, id); err != nil {
		t.Fatal(err)
	}
	var recs []iothub.FeedbackRecord
	most := 0 // frames of the longest message
	for len(recs) < 5 {
		var body []byte
		frames := 0
		for {
			p, payload := c.read()
			tr, ok := p.(*amqp.Transfer)
			if !ok {
				t.Fatalf("unexpected %#v", p)
			}
			frames++
			body = append(body, payload...)
			if !tr.More {
				break
			}
		}
		most = max(most, frames)
		m, err := amqp.UnmarshalMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		data := m.Body()
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

// Ensure that performatives with missing fields close the connection
// instead of crashing the hub.
func TestEmptyPerformatives(t *testing.T) {
	e := emulatortest.Start(t)
	for _, code := range []uint64{amqp.DescBegin, amqp.DescAttach, amqp.DescFlow, amqp.DescTransfer,
		amqp.DescDisposition, amqp.DescDetach, amqp.DescEnd} {
		c := dial(t, e, false)
		b, _ := amqp.Append(make([]byte, 8), amqp.Describe(code, []any{}))
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		b[4] = 2
		if _, err := c.conn.Write(b); err != nil {
			t.Fatal(err)
		}
		c.frame(&amqp.Close{}, nil)
		for {
			if p, _ := c.read(); p.Descriptor() == amqp.DescClose {
				break
			}
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
	next[*amqp.Close](c)
	// The hub still serves.
	dial(t, e, true)
}

// Ensure that a refused link (a node the hub does not have) ends with the
// usual detach exchange and leaves the connection usable.
func TestRefusedLink(t *testing.T) {
	e := emulatortest.Start(t)
	c := dial(t, e, false)
	if a := c.attach("files", 5, true, "/messages/serviceBound/nothing", ""); a.Source != nil || a.Target != nil {
		t.Fatalf("attach %#v", a)
	}
	if d := next[*amqp.Detach](c); d.Error == nil || d.Error.Condition != "amqp:not-found" {
		t.Fatalf("detach %#v", d)
	}
	c.frame(&amqp.Detach{Handle: 5, Closed: true}, nil) // the client's half
	if status := c.putToken(serviceToken(t, e)); status != 200 {
		t.Fatalf("put-token after a refusal answered %d", status)
	}
}
