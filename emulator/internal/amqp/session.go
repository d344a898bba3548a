package amqp

import (
	"context"
	"errors"
	"fmt"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
)

// linkCredit is the credit granted to a client's sending link, renewed
// when half of it is used.
const linkCredit = 100

// session is a begun session; channels are the client's, mirrored. Its
// fields are guarded by conn.mu.
type session struct {
	channel        uint16
	nextIncomingID uint32
	nextOutgoingID uint32           // transfer-id: one per transfer frame
	nextDelivery   uint32           // delivery-id: one per message
	links          map[uint32]*Link // by the client's handle
	refused        map[uint32]bool  // client handles of links refused, awaiting their detach
	nextHandle     uint32
	unsettled      map[uint32]unsettled // guarded by conn.mu; the engine's unsettled deliveries by delivery-id
}

// unsettled is a delivery the engine sent unsettled.
type unsettled struct {
	link    *Link
	settled func(wire.DeliveryState)
}

// handle handles one frame.
func (c *conn) handle(channel uint16, p wire.Performative, payload []byte) error {
	switch f := p.(type) {
	case *wire.Open:
		return c.onOpen(f)
	case *wire.Close:
		c.queueFrame(0, &wire.Close{}, nil)
		return errClosed
	case *wire.Begin:
		return c.onBegin(channel, f)
	}
	c.mu.Lock()
	s := c.sessions[channel]
	c.mu.Unlock()
	if s == nil {
		return fmt.Errorf("a frame on channel %d, which has no session", channel)
	}
	switch f := p.(type) {
	case *wire.End:
		c.endSession(s)
		c.queueFrame(channel, &wire.End{}, nil)
		return nil
	case *wire.Attach:
		return c.onAttach(s, f)
	case *wire.Detach:
		return c.onDetach(s, f)
	case *wire.Flow:
		return c.onFlow(s, f)
	case *wire.Transfer:
		return c.onTransfer(s, f, payload)
	case *wire.Disposition:
		return c.onDisposition(s, f)
	}
	return fmt.Errorf("unexpected %T", p)
}

func (c *conn) onOpen(o *wire.Open) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opened {
		return errors.New("a second open")
	}
	c.opened = true
	c.hostname = o.Hostname
	if o.MaxFrameSize >= 512 {
		c.peerMaxFrame = min(o.MaxFrameSize, 1<<31)
	}
	// The client's idle time-out is how long it waits for a frame: a
	// heartbeat goes out at half of it.
	if o.IdleTimeout > 0 {
		c.beatEvery = max(time.Duration(o.IdleTimeout)*time.Millisecond/2, 100*time.Millisecond)
	}
	c.queueFrame(0, &wire.Open{ContainerID: "iothub-emulator", MaxFrameSize: maxFrameSize, ChannelMax: maxChannel,
		IdleTimeout: uint32(c.s.cfg.IdleTimeout / time.Millisecond)}, nil)
	return nil
}

func (c *conn) onBegin(channel uint16, b *wire.Begin) error {
	if b.RemoteChannel != nil {
		return errors.New("begin answering a session the engine did not start")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opened {
		return errors.New("begin before open")
	}
	if c.sessions[channel] != nil || len(c.sessions) > maxChannel {
		return fmt.Errorf("begin on channel %d, which is in use or over the limit", channel)
	}
	c.sessions[channel] = &session{channel: channel, nextIncomingID: b.NextOutgoingID,
		links: map[uint32]*Link{}, refused: map[uint32]bool{}}
	c.queueFrame(channel, &wire.Begin{RemoteChannel: &channel, IncomingWindow: window, OutgoingWindow: window, HandleMax: maxHandle}, nil)
	return nil
}

// endSession ends every link of s and forgets it.
func (c *conn) endSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range s.links {
		l.endLocked()
	}
	delete(c.sessions, s.channel)
}

// detachAll ends every link when the connection ends, and waits for the
// nodes' goroutines.
func (c *conn) detachAll() {
	c.mu.Lock()
	for _, s := range c.sessions {
		for _, l := range s.links {
			l.endLocked()
		}
	}
	c.mu.Unlock()
	c.nodes.Wait()
}

func (c *conn) onAttach(s *session, a *wire.Attach) error {
	c.mu.Lock()
	if s.links[a.Handle] != nil || s.refused[a.Handle] || len(s.links)+len(s.refused) > maxHandle {
		c.mu.Unlock()
		return fmt.Errorf("attach on handle %d, which is in use or over the limit", a.Handle)
	}
	l := &Link{conn: c, sess: s, Name: a.Name, Attach: a, remote: a.Handle, handle: s.nextHandle,
		clientSends: a.Role == wire.RoleSender, creditCh: make(chan struct{})}
	s.nextHandle++
	c.mu.Unlock()
	var addr string
	if l.clientSends && a.Target != nil {
		addr = a.Target.Address
	} else if !l.clientSends && a.Source != nil {
		addr = a.Source.Address
	}
	l.Address, l.Segments = normalise(addr)
	l.ctx, l.cancel = context.WithCancel(c.ctx)
	l.Reply = &wire.Attach{Name: a.Name, Handle: l.handle, Role: !a.Role, SndSettleMode: a.SndSettleMode,
		RcvSettleMode: a.RcvSettleMode, Source: a.Source, Target: a.Target, Properties: map[any]any{}}
	node := c.s.route(l.Segments)
	var refusal *wire.Error
	_, receives := node.(Receiver)
	switch {
	case node == nil:
		refusal = wire.Errorf("amqp:not-found", "the emulator serves no node %q", addr)
	case l.clientSends && !receives:
		refusal = wire.Errorf("amqp:not-implemented", "node %q cannot be sent to", addr)
	default:
		l.node = node
		refusal = node.Attach(l)
	}
	if refusal != nil {
		l.cancel()
		return c.refuse(s, l, refusal)
	}
	if !l.clientSends {
		zero := uint32(0)
		l.Reply.InitialDeliveryCount = &zero
	}
	c.mu.Lock()
	s.links[a.Handle] = l
	if l.require != nil {
		c.armExpiryLocked()
	}
	c.queueFrame(s.channel, l.Reply, nil)
	if l.clientSends {
		if a.InitialDeliveryCount != nil {
			l.deliveryCount = *a.InitialDeliveryCount
		}
		c.grantLocked(l)
	}
	c.mu.Unlock()
	if sn, ok := node.(Sender); ok && !l.clientSends {
		c.nodes.Add(1)
		go func() {
			defer c.nodes.Done()
			sn.Serve(l)
		}()
	}
	return nil
}

// refuse answers an attach the AMQP way: an attach without the terminus,
// then a detach with the reason (part 2.6.3). Both termini are left out:
// go-amqp reads a refusal only from an attach with neither, and the other
// clients from one without the terminus they asked for.
func (c *conn) refuse(s *session, l *Link, e *wire.Error) error {
	reply := *l.Reply
	reply.Source, reply.Target = nil, nil
	c.mu.Lock()
	s.refused[l.remote] = true
	c.mu.Unlock()
	c.queueFrame(s.channel, &reply, nil)
	c.queueFrame(s.channel, &wire.Detach{Handle: l.handle, Closed: true, Error: e}, nil)
	c.s.log.Info("amqp link refused", "remote", c.remote(), "address", l.Address, "condition", string(e.Condition), "reason", e.Description)
	return nil
}

// receive hands a delivery's message to the link's node, or, for the
// batched format C# sends (each data section a whole message), each
// message in turn; the first outcome other than accepted is the
// delivery's.
func (c *conn) receive(l *Link, body []byte, format uint32) wire.DeliveryState {
	m, err := wire.UnmarshalMessage(body)
	if err != nil {
		return &wire.Rejected{Error: wire.Errorf("amqp:decode-error", "%v", err)}
	}
	node := l.node.(Receiver)
	if format != wire.BatchedMessageFormat {
		return node.Receive(l, m)
	}
	for i, section := range m.Data {
		inner, err := wire.UnmarshalMessage(section)
		if err != nil {
			return &wire.Rejected{Error: wire.Errorf("amqp:decode-error", "message %d of the batch: %v", i, err)}
		}
		if out := node.Receive(l, inner); !isAccepted(out) {
			return out
		}
	}
	return &wire.Accepted{}
}

func isAccepted(s wire.DeliveryState) bool {
	_, ok := s.(*wire.Accepted)
	return ok
}

// onDisposition settles the engine's unsettled deliveries in the range a
// client receiver settles, and answers a disposition the client left
// unsettled (rcv-settle-mode second) with a settled accepted, as IoT Hub
// does (next-wave-protocols §2.5).
func (c *conn) onDisposition(s *session, d *wire.Disposition) error {
	if d.Role != wire.RoleReceiver {
		return nil // about the client's own transfers, which the engine settles at once
	}
	last := d.First
	if d.Last != nil {
		last = *d.Last
	}
	var calls []func()
	c.mu.Lock()
	for id, u := range s.unsettled {
		if id >= d.First && id <= last {
			delete(s.unsettled, id)
			settled, state := u.settled, d.State
			calls = append(calls, func() { settled(state) })
		}
	}
	c.mu.Unlock()
	for _, call := range calls {
		call()
	}
	if !d.Settled {
		// After the settlement took effect: the client takes the answer
		// as its end.
		c.queueFrame(s.channel, &wire.Disposition{Role: wire.RoleSender, First: d.First, Last: d.Last, Settled: true, State: &wire.Accepted{}}, nil)
	}
	return nil
}

func (c *conn) onDetach(s *session, d *wire.Detach) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.refused[d.Handle] {
		delete(s.refused, d.Handle) // the client's half of a refusal
		return nil
	}
	l := s.links[d.Handle]
	if l == nil {
		return fmt.Errorf("detach of unknown handle %d", d.Handle)
	}
	delete(s.links, d.Handle)
	answered := l.detached // the engine detached it first: this is the answer
	l.endLocked()
	if !answered {
		c.queueFrame(s.channel, &wire.Detach{Handle: l.handle, Closed: true}, nil)
	}
	return nil
}

func (c *conn) onFlow(s *session, f *wire.Flow) error {
	if f.Handle == nil {
		return nil // session flow only: the windows are not enforced
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := s.links[*f.Handle]
	if l == nil || l.clientSends {
		return nil
	}
	// Credit counts from the delivery-count the client last saw.
	var dc, credit uint32
	if f.DeliveryCount != nil {
		dc = *f.DeliveryCount
	}
	if f.LinkCredit != nil {
		credit = *f.LinkCredit
	}
	if dc+credit > l.deliveryCount {
		l.credit = dc + credit - l.deliveryCount
	} else {
		l.credit = 0
	}
	l.drain = f.Drain
	l.flushLocked()
	l.signalCreditLocked()
	if l.drain && l.credit > 0 && len(l.pending) == 0 {
		// Nothing to send: use up the credit and say so (part 2.6.7).
		l.deliveryCount += l.credit
		l.credit = 0
		c.flowLocked(l, true)
	} else if f.Echo {
		c.flowLocked(l, false)
	}
	return nil
}

// flowLocked sends the link's flow state.
func (c *conn) flowLocked(l *Link, drain bool) {
	s := l.sess
	next := s.nextIncomingID
	h, dc, credit := l.handle, l.deliveryCount, l.credit
	c.queueFrame(s.channel, &wire.Flow{NextIncomingID: &next, IncomingWindow: window, NextOutgoingID: s.nextOutgoingID,
		OutgoingWindow: window, Handle: &h, DeliveryCount: &dc, LinkCredit: &credit, Drain: drain}, nil)
}

// grantLocked gives the client's sending link fresh credit.
func (c *conn) grantLocked(l *Link) {
	l.received = 0
	l.credit = linkCredit
	c.flowLocked(l, false)
}

func (c *conn) onTransfer(s *session, t *wire.Transfer, payload []byte) error {
	c.mu.Lock()
	s.nextIncomingID++
	l := s.links[t.Handle]
	if l == nil || !l.clientSends {
		c.mu.Unlock()
		return fmt.Errorf("transfer on handle %d, which is not a link the client sends on", t.Handle)
	}
	if !l.inTransfer {
		if t.DeliveryID != nil {
			l.deliveryID = *t.DeliveryID
		}
		l.settled, l.inTransfer, l.assembling = t.Settled, true, l.assembling[:0]
		l.format = 0
		if t.MessageFormat != nil {
			l.format = *t.MessageFormat
		}
	}
	if len(l.assembling)+len(payload) > c.s.cfg.MaxMessageSize {
		c.mu.Unlock()
		return wire.Errorf("amqp:link:message-size-exceeded", "a message larger than %d bytes", c.s.cfg.MaxMessageSize)
	}
	l.assembling = append(l.assembling, payload...)
	if t.More || t.Aborted {
		if t.Aborted {
			l.inTransfer = false
		}
		c.mu.Unlock()
		return nil
	}
	l.inTransfer = false
	l.deliveryCount++
	l.received++
	body, id, settled, format := l.assembling, l.deliveryID, l.settled, l.format
	if l.received >= linkCredit/2 {
		c.grantLocked(l)
	}
	c.mu.Unlock()
	if ar, ok := l.node.(AsyncReceiver); ok && format != wire.BatchedMessageFormat {
		m, err := wire.UnmarshalMessage(body)
		if err != nil {
			if !settled {
				c.queueFrame(s.channel, &wire.Disposition{Role: wire.RoleReceiver, First: id, Settled: true,
					State: &wire.Rejected{Error: wire.Errorf("amqp:decode-error", "%v", err)}}, nil)
			}
			return nil
		}
		ar.ReceiveAsync(l, m, func(outcome wire.DeliveryState) {
			if !settled {
				c.queueFrame(s.channel, &wire.Disposition{Role: wire.RoleReceiver, First: id, Settled: true, State: outcome}, nil)
			}
		})
		return nil
	}
	outcome := c.receive(l, body, format)
	if !settled {
		c.queueFrame(s.channel, &wire.Disposition{Role: wire.RoleReceiver, First: id, Settled: true, State: outcome}, nil)
	}
	return nil
}
