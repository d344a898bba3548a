package amqp

import (
	"context"
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
	inTransfer    bool
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

// Send sends m on a link the client receives from, waiting until the
// client gives credit. Messages go pre-settled. It returns ErrDetached
// once the link has ended, or ctx's error.
func (l *Link) Send(ctx context.Context, m *wire.Message) error {
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
			l.transferLocked(b)
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock() // a drain took the credit: wait for more
	}
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
		l.transferLocked(b)
	}
}

// transferLocked sends one message, pre-settled, split into frames no
// larger than the client accepts, and uses one credit.
func (l *Link) transferLocked(msg []byte) {
	c, s := l.conn, l.sess
	room := int(c.peerMaxFrame) - 64 // the frame header and the transfer performative
	var tag [4]byte
	binary.BigEndian.PutUint32(tag[:], l.deliveryCount)
	id, format := s.nextDelivery, uint32(0)
	for first := true; first || len(msg) > 0; first = false {
		part := msg[:min(len(msg), room)]
		msg = msg[len(part):]
		t := &wire.Transfer{Handle: l.handle, More: len(msg) > 0}
		if first {
			t.DeliveryID, t.DeliveryTag, t.MessageFormat, t.Settled = &id, tag[:], &format, true
		}
		c.queueFrame(s.channel, t, part)
		s.nextOutgoingID++
	}
	s.nextDelivery++
	l.deliveryCount++
	l.credit--
}
