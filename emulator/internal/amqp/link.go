package amqp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
)

// ErrDetached is returned by a link's Send once the link has ended.
var ErrDetached = errors.New("amqp: link detached")

// maxPending bounds the replies waiting for credit on one link.
const maxPending = 256

// Link is an attached link as a node sees it. The exported fields are set
// before the node's Attach and not changed after.
type Link struct {
	Name     string       // the link's name, as the client chose it
	Address  string       // the node address, without scheme and host
	Segments []string     // Address split at '/', each segment percent-decoded
	Attach   *wire.Attach // the client's attach
	// Reply is the attach the engine answers with. A node's Attach may
	// change it (capabilities, properties, the source's filter) before it
	// is sent.
	Reply *wire.Attach

	conn        *conn
	sess        *session
	node        Node
	handle      uint32 // the engine's
	remote      uint32 // the client's
	clientSends bool
	ctx         context.Context // ends when the link does
	cancel      context.CancelFunc

	// Guarded by conn.mu.
	credit        uint32        // the client's credit on a link the engine sends on
	deliveryCount uint32        // part 2.6.7
	drain         bool          // the client asked for its credit to be used up
	pending       [][]byte      // replies waiting for credit
	creditCh      chan struct{} // closed, and replaced, whenever credit changes
	detached      bool          // the engine detached it; the client's answer is awaited
	ended         bool
	received      uint32 // transfers since credit was last granted
	assembling    []byte // a multi-frame delivery so far
	deliveryID    uint32
	settled       bool
	format        uint32 // the message-format of the delivery being assembled
	inTransfer    bool
	require       func(Claim) bool // the claim the link was attached with (Require)
}

// Context returns a context that ends when the link or its connection
// does.
func (l *Link) Context() context.Context { return l.ctx }

// Remote is the address of the client.
func (l *Link) Remote() string { return l.conn.remote() }

// Claims returns the claims the connection holds that have not expired.
func (l *Link) Claims() []Claim {
	now := l.conn.s.cfg.Now()
	l.conn.mu.Lock()
	defer l.conn.mu.Unlock()
	var out []Claim
	for _, c := range l.conn.claims {
		if now.Before(c.Expiry) {
			out = append(out, c)
		}
	}
	return out
}

// Authorized reports whether a claim the connection holds satisfies ok.
func (l *Link) Authorized(ok func(Claim) bool) bool {
	for _, c := range l.Claims() {
		if ok(c) {
			return true
		}
	}
	return false
}

// Require is Authorized for a node's Attach: the link also stays
// attached only as long as a claim satisfies ok. When the last such claim
// expires without a renewal put on $cbs, the engine detaches the link
// with amqp:unauthorized-access, as IoT Hub does.
func (l *Link) Require(ok func(Claim) bool) bool {
	if !l.Authorized(ok) {
		return false
	}
	l.conn.mu.Lock()
	l.require = ok // the expiry timer is armed once the link is attached
	l.conn.mu.Unlock()
	return true
}

// Send sends m on a link the client receives from, waiting until the
// client gives credit. Messages go pre-settled. It returns ErrDetached
// once the link has ended, or ctx's error.
func (l *Link) Send(ctx context.Context, m *wire.Message) error {
	return l.send(ctx, m, nil, nil)
}

// SendUnsettled sends m as Send does, but unsettled, with delivery tag
// tag: settled is called once with the state the client settles it with,
// or with nil if the link ends first. It is called on the connection's
// reader goroutine (for nil, its own) and must not block on the
// connection.
func (l *Link) SendUnsettled(ctx context.Context, m *wire.Message, tag []byte, settled func(wire.DeliveryState)) error {
	return l.send(ctx, m, tag, settled)
}

// send waits for credit and transfers m, pre-settled unless settled is
// set.
func (l *Link) send(ctx context.Context, m *wire.Message, tag []byte, settled func(wire.DeliveryState)) error {
	b, err := m.Marshal(nil)
	if err != nil {
		return err
	}
	c := l.conn
	for {
		if err := l.WaitCredit(ctx); err != nil {
			return err
		}
		c.mu.Lock()
		if l.ended {
			c.mu.Unlock()
			return ErrDetached
		}
		if l.credit > 0 && len(l.pending) == 0 {
			l.transferLocked(b, tag, settled)
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock() // a drain took the credit: wait for more
	}
}

// HostName is the host name the client's open named.
func (l *Link) HostName() string {
	l.conn.mu.Lock()
	defer l.conn.mu.Unlock()
	return l.conn.hostname
}

// PeerCertificates are the certificates the client presented in its TLS
// handshake, if it made one on this connection.
func (l *Link) PeerCertificates() []*x509.Certificate {
	if tc, ok := l.conn.nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState().PeerCertificates
	}
	return nil
}

// CloseConnection closes the link's connection with e: its sessions end,
// the close frame goes out, then the socket is closed.
//
// The sessions end first because the Node SDK, told only of the close,
// detaches its links cleanly and waits 45 s for answers that never come
// before it reconnects; after a session's end it lets them go at once.
func (l *Link) CloseConnection(e *wire.Error) {
	c := l.conn
	c.mu.Lock()
	for _, s := range c.sessions {
		for _, link := range s.links {
			link.endLocked()
		}
		c.queueFrame(s.channel, &wire.End{Error: e}, nil)
	}
	c.mu.Unlock()
	c.closeWith(e)
	c.finish()
}

// Shared returns the value a face keeps for the link's connection under
// key, made by create on first use; create's cleanup runs when the
// connection ends, after its links. create runs without the engine's
// locks.
func (l *Link) Shared(key any, create func() (any, func())) any {
	c := l.conn
	c.mu.Lock()
	v, ok := c.shared[key]
	c.mu.Unlock()
	if ok {
		return v
	}
	v, cleanup := create()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.shared[key]; ok {
		if cleanup != nil {
			go cleanup() // another link made it first
		}
		return old
	}
	if c.shared == nil {
		c.shared = map[any]any{}
	}
	c.shared[key] = v
	if cleanup != nil {
		c.cleanups = append(c.cleanups, cleanup)
	}
	return v
}

// WaitCredit waits until the client has given the link credit, so that a
// node takes a message from its source only when it can send it.
func (l *Link) WaitCredit(ctx context.Context) error {
	c := l.conn
	for {
		c.mu.Lock()
		if l.ended {
			c.mu.Unlock()
			return ErrDetached
		}
		if l.credit > 0 && len(l.pending) == 0 {
			c.mu.Unlock()
			return nil
		}
		ch := l.creditCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.ctx.Done():
			return ErrDetached
		}
	}
}

// Offer queues m on a link the client receives from and sends it as soon
// as there is credit; replies to requests go this way, so a client that
// withholds credit cannot stall the connection's reader. Past a bound the
// link is detached.
func (l *Link) Offer(m *wire.Message) {
	b, err := m.Marshal(nil)
	if err != nil {
		l.Detach(wire.Errorf("amqp:internal-error", "%v", err))
		return
	}
	c := l.conn
	c.mu.Lock()
	if l.ended || l.detached {
		c.mu.Unlock()
		return
	}
	if len(l.pending) >= maxPending {
		c.mu.Unlock()
		l.Detach(wire.Errorf("amqp:resource-limit-exceeded", "more than %d replies wait for credit", maxPending))
		return
	}
	l.pending = append(l.pending, b)
	l.flushLocked()
	c.mu.Unlock()
}

// Detach ends the link from the engine's side with e (nil for none); the
// client answers with its own detach.
func (l *Link) Detach(e *wire.Error) {
	c := l.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.detached || l.ended {
		return
	}
	l.detached = true
	c.queueFrame(l.sess.channel, &wire.Detach{Handle: l.handle, Closed: true, Error: e}, nil)
	l.cancel()
	l.signalCreditLocked()
}

// endLocked marks the link ended and wakes whoever waits on it.
func (l *Link) endLocked() {
	if l.ended {
		return
	}
	l.ended = true
	l.cancel()
	l.signalCreditLocked()
	for id, u := range l.sess.unsettled {
		if u.link == l {
			delete(l.sess.unsettled, id)
			go u.settled(nil)
		}
	}
}

func (l *Link) signalCreditLocked() {
	close(l.creditCh)
	l.creditCh = make(chan struct{})
}

// flushLocked sends queued replies while there is credit.
func (l *Link) flushLocked() {
	for len(l.pending) > 0 && l.credit > 0 && !l.ended {
		b := l.pending[0]
		l.pending = l.pending[1:]
		l.transferLocked(b, nil, nil)
	}
}

// transferLocked sends one message, split into frames no larger than the
// client accepts, and uses one credit: pre-settled, or, with settled set,
// unsettled with tag until the client's disposition.
func (l *Link) transferLocked(msg, tag []byte, settled func(wire.DeliveryState)) {
	c, s := l.conn, l.sess
	room := int(c.peerMaxFrame) - 64 - len(tag) // the frame header and the transfer performative
	if tag == nil {
		tag = binary.BigEndian.AppendUint32(nil, l.deliveryCount)
	}
	id, format := s.nextDelivery, uint32(0)
	if settled != nil {
		if s.unsettled == nil {
			s.unsettled = map[uint32]unsettled{}
		}
		s.unsettled[id] = unsettled{link: l, settled: settled}
	}
	for first := true; first || len(msg) > 0; first = false {
		part := msg[:min(len(msg), room)]
		msg = msg[len(part):]
		t := &wire.Transfer{Handle: l.handle, More: len(msg) > 0}
		if first {
			t.DeliveryID, t.DeliveryTag, t.MessageFormat, t.Settled = &id, tag, &format, settled == nil
		}
		c.queueFrame(s.channel, t, part)
		s.nextOutgoingID++
	}
	s.nextDelivery++
	l.deliveryCount++
	l.credit--
}
