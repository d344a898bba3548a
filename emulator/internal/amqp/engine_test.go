package amqp

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
)

// pipeClient drives the engine over net.Pipe with typed frames.
type pipeClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func startEngine(t *testing.T, cfg Config, nodes map[string]Node) (*Server, *pipeClient) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := New(cfg)
	for p, n := range nodes {
		s.Handle(p, n)
	}
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		s.ServeConn(server)
		close(done)
	}()
	t.Cleanup(func() {
		client.Close()
		<-done
		s.Close()
	})
	c := &pipeClient{t: t, nc: client, r: bufio.NewReader(client)}
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	c.write(wire.HeaderAMQP)
	var h [8]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		t.Fatal(err)
	}
	c.frame(&wire.Open{ContainerID: "t", MaxFrameSize: 4096}, nil)
	if o := next[*wire.Open](c); o.MaxFrameSize == 0 || o.IdleTimeout == 0 {
		t.Fatalf("open %#v: max-frame-size and idle-time-out must be explicit", o)
	}
	c.frame(&wire.Begin{IncomingWindow: 100, OutgoingWindow: 100}, nil)
	if b := next[*wire.Begin](c); b.HandleMax == 0 || b.RemoteChannel == nil {
		t.Fatalf("begin %#v", b)
	}
	return s, c
}

func (c *pipeClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *pipeClient) frame(p wire.Performative, payload []byte) {
	c.t.Helper()
	b, err := wire.AppendFrame(nil, 0, p, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(b)
}

func (c *pipeClient) read() (wire.Performative, []byte) {
	c.t.Helper()
	for {
		_, _, body, err := wire.ReadFrame(c.r, 1<<20)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if len(body) == 0 {
			continue
		}
		p, payload, err := wire.Unmarshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		return p, payload
	}
}

func next[P wire.Performative](c *pipeClient) P {
	c.t.Helper()
	p, _ := c.read()
	want, ok := p.(P)
	if !ok {
		c.t.Fatalf("got %#v, want a %T", p, want)
	}
	return want
}

func (c *pipeClient) flow(handle, count, credit uint32, drain bool) {
	c.frame(&wire.Flow{IncomingWindow: 100, OutgoingWindow: 100, Handle: ptr(handle), DeliveryCount: ptr(count),
		LinkCredit: ptr(credit), Drain: drain}, nil)
}

// queueNode sends what is put in its channel to every link attached to it.
type queueNode struct {
	msgs     chan *wire.Message
	attached chan *Link
	sent     atomic.Int64
}

func (n *queueNode) Attach(l *Link) *wire.Error {
	l.Reply.OfferedCapabilities = []wire.Symbol{"test"}
	n.attached <- l
	return nil
}

func (n *queueNode) Serve(l *Link) {
	for {
		select {
		case m := <-n.msgs:
			if err := l.Send(l.Context(), m); err != nil {
				return
			}
			n.sent.Add(1)
		case <-l.Context().Done():
			return
		}
	}
}

// Ensure that the engine answers an attach with both termini, a
// properties map and the initial delivery count (pyamqp refuses an
// attach without them), and sends only as much as the client's credit
// allows, resuming when it grants more.
func TestEngineCredit(t *testing.T) {
	n := &queueNode{msgs: make(chan *wire.Message, 10), attached: make(chan *Link, 1)}
	_, c := startEngine(t, Config{}, map[string]Node{"hub/ConsumerGroups/*/Partitions/*": n})
	c.frame(&wire.Attach{Name: "r", Handle: 7, Role: wire.RoleReceiver,
		Source: &wire.Source{Address: "amqps://localhost:5671/hub/ConsumerGroups/$Default/Partitions/1"},
		Target: &wire.Target{Address: "me"}, Properties: map[any]any{wire.Symbol("com.microsoft:timeout"): int64(0)}}, nil)
	a := next[*wire.Attach](c)
	if a.Source == nil || a.Target == nil || a.Properties == nil || a.InitialDeliveryCount == nil || a.Role != wire.RoleSender ||
		len(a.OfferedCapabilities) != 1 {
		t.Fatalf("attach %#v", a)
	}
	l := <-n.attached
	if l.Address != "/hub/ConsumerGroups/$Default/Partitions/1" || l.Segments[4] != "1" {
		t.Fatalf("address %q, segments %q", l.Address, l.Segments)
	}
	for i := range 3 {
		n.msgs <- &wire.Message{Data: [][]byte{{byte(i)}}}
	}
	c.flow(7, 0, 2, false)
	for i := range 2 {
		tr, payload := c.read()
		m, _ := wire.UnmarshalMessage(payload)
		if tr.(*wire.Transfer).Handle != a.Handle || m.Data[0][0] != byte(i) {
			t.Fatalf("transfer %d: %#v %#v", i, tr, m)
		}
	}
	// With its credit used, the third message waits: a drain with the
	// credit that remains (none) is answered with nothing sent.
	c.flow(7, 2, 0, true)
	c.flow(7, 2, 1, false)
	_, payload := c.read()
	if m, _ := wire.UnmarshalMessage(payload); m.Data[0][0] != 2 {
		t.Fatalf("third message %#v", m)
	}
	// A drain with nothing to send uses the credit up and says so.
	c.flow(7, 3, 5, true)
	f := next[*wire.Flow](c)
	if !f.Drain || *f.DeliveryCount != 8 || *f.LinkCredit != 0 {
		t.Fatalf("drain answer %#v", f)
	}
}

// Ensure that a request node answers on the client's reply link, the
// request's message-id coming back as correlation-id with its own type
// (Python sends ulongs, JavaScript uuid strings).
func TestEngineRequestReply(t *testing.T) {
	node := &RequestNode{Handle: func(l *Link, req *wire.Message) *wire.Message {
		return &wire.Message{ApplicationProperties: map[any]any{"status-code": int32(200)}, Value: map[any]any{"name": "hub"}, HasValue: true}
	}}
	_, c := startEngine(t, Config{}, map[string]Node{"$management": node})
	c.frame(&wire.Attach{Name: "s", Handle: 0, Role: wire.RoleSender, Source: &wire.Source{}, Target: &wire.Target{Address: "$management"},
		InitialDeliveryCount: ptr(uint32(0))}, nil)
	next[*wire.Attach](c)
	next[*wire.Flow](c)
	c.frame(&wire.Attach{Name: "reply-uuid", Handle: 1, Role: wire.RoleReceiver, Source: &wire.Source{Address: "$management"},
		Target: &wire.Target{Address: "reply-uuid"}}, nil)
	next[*wire.Attach](c)
	c.flow(1, 0, 5, false)
	req := &wire.Message{Properties: &wire.Properties{MessageID: uint64(7)}}
	b, _ := req.Marshal(nil)
	c.frame(&wire.Transfer{Handle: 0, DeliveryID: ptr(uint32(0)), DeliveryTag: []byte{0}, Settled: true}, b)
	tr, payload := c.read()
	m, err := wire.UnmarshalMessage(payload)
	if err != nil || tr.(*wire.Transfer).Handle != 1 || m.Properties.CorrelationID != uint64(7) {
		t.Fatalf("reply %#v %#v, %v", tr, m, err)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// claimNode accepts messages only from connections holding a claim.
type claimNode struct{}

func (claimNode) Attach(*Link) *wire.Error { return nil }
func (claimNode) Receive(l *Link, m *wire.Message) wire.DeliveryState {
	if !l.Authorized(func(c Claim) bool { return c.Subject == "owner" }) {
		return &wire.Rejected{Error: wire.Errorf("amqp:unauthorized-access", "no claim")}
	}
	return &wire.Accepted{}
}

// Ensure that a put-token's claim counts until its expiry by the
// engine's clock, and not after.
func TestEngineClaimExpiry(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	authorize := func(aud, typ, token string) (Claim, error) {
		if token != "good" {
			return Claim{}, errors.New("bad token")
		}
		return Claim{Audience: aud, Subject: "owner", Expiry: clock.Now().Add(time.Minute)}, nil
	}
	_, c := startEngine(t, Config{Now: clock.Now, Authorize: authorize}, map[string]Node{"/in": claimNode{}})
	c.frame(&wire.Attach{Name: "cbs", Handle: 0, Role: wire.RoleSender, Target: &wire.Target{Address: "$cbs"}, InitialDeliveryCount: ptr(uint32(0))}, nil)
	next[*wire.Attach](c)
	next[*wire.Flow](c)
	c.frame(&wire.Attach{Name: "cbs-r", Handle: 1, Role: wire.RoleReceiver, Source: &wire.Source{Address: "$cbs"}}, nil)
	next[*wire.Attach](c)
	c.flow(1, 0, 5, false)
	c.frame(&wire.Attach{Name: "in", Handle: 2, Role: wire.RoleSender, Target: &wire.Target{Address: "/in"}, InitialDeliveryCount: ptr(uint32(0))}, nil)
	next[*wire.Attach](c)
	next[*wire.Flow](c)
	send := func(id uint32) wire.DeliveryState {
		c.frame(&wire.Transfer{Handle: 2, DeliveryID: ptr(id), DeliveryTag: []byte{byte(id)}}, []byte{0x00, 0x53, 0x75, 0xa0, 0})
		return next[*wire.Disposition](c).State
	}
	if _, ok := send(0).(*wire.Rejected); !ok {
		t.Fatal("accepted before any token")
	}
	put := &wire.Message{ApplicationProperties: map[any]any{"operation": "put-token", "name": "hub"}, Value: "good", HasValue: true}
	b, _ := put.Marshal(nil)
	c.frame(&wire.Transfer{Handle: 0, DeliveryID: ptr(uint32(1)), DeliveryTag: []byte{1}, Settled: true}, b)
	_, payload := c.read()
	if m, _ := wire.UnmarshalMessage(payload); m.ApplicationProperties["status-code"] != int32(200) {
		t.Fatalf("put-token answered %#v", m.ApplicationProperties)
	}
	if _, ok := send(2).(*wire.Accepted); !ok {
		t.Fatal("refused with a valid claim")
	}
	clock.Advance(2 * time.Minute)
	if _, ok := send(3).(*wire.Rejected); !ok {
		t.Fatal("accepted after the claim expired")
	}
}

// requireNode is a sender node that keeps a link only while a claim of
// its subject lasts.
type requireNode struct{}

func (requireNode) Attach(l *Link) *wire.Error {
	subject := l.Segments[len(l.Segments)-1]
	if !l.Require(func(c Claim) bool { return c.Subject == subject }) {
		return wire.Errorf("amqp:unauthorized-access", "no claim for %s", subject)
	}
	return nil
}

func (requireNode) Serve(l *Link) { <-l.Context().Done() }

// Ensure that a link attached with a claim is detached with
// amqp:unauthorized-access when the claim expires without a renewal, and
// that a link whose claim was renewed on $cbs before it expired stays.
func TestEngineLinkTokenExpiry(t *testing.T) {
	expiry := time.Now().Add(300 * time.Millisecond)
	authorize := func(aud, typ, token string) (Claim, error) {
		subject, renewed := strings.CutSuffix(token, "+renewed")
		exp := expiry
		if renewed {
			exp = exp.Add(time.Hour)
		}
		return Claim{Audience: aud, Subject: subject, Expiry: exp}, nil
	}
	_, c := startEngine(t, Config{Authorize: authorize}, map[string]Node{"/feeds/a": requireNode{}, "/feeds/b": requireNode{}})
	c.frame(&wire.Attach{Name: "cbs", Handle: 0, Role: wire.RoleSender, Target: &wire.Target{Address: "$cbs"}, InitialDeliveryCount: ptr(uint32(0))}, nil)
	next[*wire.Attach](c)
	next[*wire.Flow](c)
	c.frame(&wire.Attach{Name: "cbs-r", Handle: 1, Role: wire.RoleReceiver, Source: &wire.Source{Address: "$cbs"}}, nil)
	next[*wire.Attach](c)
	c.flow(1, 0, 10, false)
	id := uint32(0)
	put := func(token string) {
		t.Helper()
		m := &wire.Message{ApplicationProperties: map[any]any{"operation": "put-token", "name": "hub"}, Value: token, HasValue: true}
		b, _ := m.Marshal(nil)
		c.frame(&wire.Transfer{Handle: 0, DeliveryID: ptr(id), DeliveryTag: []byte{byte(id)}, Settled: true}, b)
		id++
	}
	// reply reads frames up to the next put-token answer, and the links
	// detached meanwhile.
	reply := func() (detached []uint32) {
		t.Helper()
		for {
			p, payload := c.read()
			switch f := p.(type) {
			case *wire.Detach:
				if f.Error == nil || f.Error.Condition != "amqp:unauthorized-access" {
					t.Fatalf("detach %+v", f)
				}
				detached = append(detached, f.Handle)
			case *wire.Transfer:
				if m, _ := wire.UnmarshalMessage(payload); m.ApplicationProperties["status-code"] != int32(200) {
					t.Fatalf("put-token answered %#v", m.ApplicationProperties)
				}
				return detached
			}
		}
	}
	put("a")
	reply()
	put("b")
	reply()
	c.frame(&wire.Attach{Name: "a", Handle: 2, Role: wire.RoleReceiver, Source: &wire.Source{Address: "/feeds/a"}}, nil)
	next[*wire.Attach](c)
	c.frame(&wire.Attach{Name: "b", Handle: 3, Role: wire.RoleReceiver, Source: &wire.Source{Address: "/feeds/b"}}, nil)
	next[*wire.Attach](c)
	put("b+renewed")
	reply()
	// Link a is detached when its claim expires (the engine's handle for
	// it is 2: handles are given in attach order, $cbs's first).
	p, _ := c.read()
	d, ok := p.(*wire.Detach)
	if !ok || d.Error == nil || d.Error.Condition != "amqp:unauthorized-access" || d.Handle != 2 {
		t.Fatalf("got %#v, want link a detached with amqp:unauthorized-access", p)
	}
	// Had b been detached, its detach would precede this answer: both
	// were judged when the first claims expired, together.
	put("probe")
	if detached := reply(); len(detached) != 0 {
		t.Fatalf("links %v detached despite a renewed claim", detached)
	}
}

// Ensure that a client that stops reading is disconnected once a write
// has waited WriteTimeout, and that its node's sender is told.
func TestEngineStalledClient(t *testing.T) {
	n := &queueNode{msgs: make(chan *wire.Message, 1), attached: make(chan *Link, 1)}
	_, c := startEngine(t, Config{WriteTimeout: 50 * time.Millisecond}, map[string]Node{"q": n})
	c.frame(&wire.Attach{Name: "r", Handle: 0, Role: wire.RoleReceiver, Source: &wire.Source{Address: "q"}}, nil)
	next[*wire.Attach](c)
	l := <-n.attached
	c.flow(0, 0, 1000, false)
	// The client now reads nothing more; the pipe holds no bytes, so the
	// first transfer blocks the engine's writer until its deadline.
	n.msgs <- &wire.Message{Data: [][]byte{make([]byte, 100)}}
	select {
	case <-l.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled client was not disconnected")
	}
}
