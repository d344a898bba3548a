package amqp_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/eventhubs"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// ehToken signs a token as the Event Hubs clients do: the audience with
// its scheme, keyed with the key string's bytes.
func ehToken(t *testing.T, e *emulatortest.Env, audience string) string {
	svc := e.ServiceString()
	tok := sas.Token{Resource: sas.Escape(audience), Expiry: strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), KeyName: svc.SharedAccessKeyName}
	tok.Signature = sas.Sign(tok.Resource, tok.Expiry, []byte(svc.SharedAccessKey))
	return tok.String()
}

// receive attaches a partition receiver with an epoch (nil for none)
// and returns the hub's attach.
func (c *client) receive(handle uint32, epoch *int64) *amqp.Attach {
	c.t.Helper()
	a := &amqp.Attach{Name: "r" + strconv.Itoa(int(handle)), Handle: handle, Role: amqp.RoleReceiver,
		Source: &amqp.Source{Address: "localhost/ConsumerGroups/$Default/Partitions/1"}, Target: &amqp.Target{Address: "me"}}
	if epoch != nil {
		a.Properties = map[any]any{amqp.Symbol(eventhubs.Epoch): *epoch}
	}
	c.frame(a, nil)
	return next[*amqp.Attach](c)
}

// stolen reads the detach of the link the client calls handle, which
// must be amqp:link:stolen, and answers it.
func (c *client) stolen(handle uint32) {
	c.t.Helper()
	d := next[*amqp.Detach](c)
	if d.Error == nil || d.Error.Condition != eventhubs.LinkStolen {
		c.t.Fatalf("detach %#v, want amqp:link:stolen", d)
	}
	c.frame(&amqp.Detach{Handle: handle, Closed: true}, nil)
}

func i64(v int64) *int64 { return &v }

// takeOver attaches an epoch receiver that must be accepted, and the
// links the hub calls stolen detached with amqp:link:stolen, in whatever
// order the hub sends the attach and the detaches.
func (c *client) takeOver(handle uint32, epoch int64, stolen ...uint32) {
	c.t.Helper()
	c.frame(&amqp.Attach{Name: "r" + strconv.Itoa(int(handle)), Handle: handle, Role: amqp.RoleReceiver,
		Source: &amqp.Source{Address: "localhost/ConsumerGroups/$Default/Partitions/1"}, Target: &amqp.Target{Address: "me"},
		Properties: map[any]any{amqp.Symbol(eventhubs.Epoch): epoch}}, nil)
	detached := map[uint32]bool{}
	for attached := false; !attached || len(detached) < len(stolen); {
		switch p, _ := c.read(); p := p.(type) {
		case *amqp.Detach:
			if p.Error == nil || p.Error.Condition != eventhubs.LinkStolen {
				c.t.Fatalf("detach %#v", p)
			}
			detached[p.Handle] = true
			c.frame(&amqp.Detach{Handle: p.Handle, Closed: true}, nil)
		case *amqp.Attach:
			if p.Source == nil {
				c.t.Fatalf("the receiver with epoch %d was refused", epoch)
			}
			attached = true
		default:
			c.t.Fatalf("unexpected %#v", p)
		}
	}
	for _, h := range stolen {
		if !detached[h] {
			c.t.Errorf("link %d was not detached; detached %v", h, detached)
		}
	}
}

// Ensure that epoch (owner level) receivers follow the Event Hubs rules:
// a higher or equal epoch takes the partition and the holder is detached
// with amqp:link:stolen, a lower one or none is refused, and receivers of
// other consumer groups or partitions are not touched.
func TestEventHubsEpochs(t *testing.T) {
	e := emulatortest.Start(t)
	c := dial(t, e, true)
	if status := c.putToken(ehToken(t, e, "sb://localhost/localhost")); status != 200 {
		t.Fatalf("put-token answered %d", status)
	}
	// Two receivers without an epoch share the partition.
	for _, h := range []uint32{2, 3} {
		if a := c.receive(h, nil); a.Source == nil {
			t.Fatalf("receiver %d refused", h)
		}
	}
	// An epoch receiver takes it from both; the engine's handles for the
	// two are 2 and 3 as well.
	c.takeOver(4, 5, 2, 3)
	// None, or a lower epoch, is refused.
	for h, epoch := range map[uint32]*int64{5: nil, 6: i64(4)} {
		if a := c.receive(h, epoch); a.Source != nil {
			t.Fatalf("receiver %d with epoch %v accepted beside epoch 5", h, epoch)
		}
		c.stolen(h)
	}
	// An equal epoch takes over.
	c.takeOver(7, 5, 4)
	// The Event Hubs client on the other partitions is unaffected: a
	// non-epoch receiver of partition 2 attaches.
	a := &amqp.Attach{Name: "other", Handle: 8, Role: amqp.RoleReceiver,
		Source: &amqp.Source{Address: "localhost/ConsumerGroups/$Default/Partitions/2"}, Target: &amqp.Target{Address: "me"}}
	c.frame(a, nil)
	if a := next[*amqp.Attach](c); a.Source == nil {
		t.Fatal("a receiver of another partition was refused")
	}
}

// Ensure that the IoT Hub connection-string path is refused without a
// token and redirected with one, with the info the clients read.
func TestEventHubsRedirect(t *testing.T) {
	e := emulatortest.Start(t)
	c := dial(t, e, true)
	if a := c.attach("r", 2, true, "amqps://localhost/messages/events/$management", "me"); a.Source != nil {
		t.Fatal("a receiver without a token was accepted")
	}
	if d := next[*amqp.Detach](c); d.Error == nil || d.Error.Condition != "amqp:unauthorized-access" {
		t.Fatalf("detach %#v", d)
	}
	c.frame(&amqp.Detach{Handle: 2, Closed: true}, nil)
	if status := c.putToken(serviceToken(t, e)); status != 200 {
		t.Fatalf("put-token answered %d", status)
	}
	c.attach("r", 3, true, "amqps://localhost/messages/events/ConsumerGroups/$Default/Partitions/0", "me")
	d := next[*amqp.Detach](c)
	if d.Error == nil || d.Error.Condition != eventhubs.LinkRedirect {
		t.Fatalf("detach %#v", d)
	}
	info := d.Error.Info
	port := info[amqp.Symbol("port")]
	want := eventhubs.RedirectAddress("localhost", int(port.(int32)), "localhost", "ConsumerGroups/$Default/Partitions/0")
	if info[amqp.Symbol("hostname")] != "localhost" || info[amqp.Symbol("address")] != want || e.AMQPAddr() != "127.0.0.1:"+strconv.Itoa(int(port.(int32))) {
		t.Fatalf("redirect info %v", info)
	}
}
