// Package amqp is the hub's AMQP 1.0 face for service clients: the
// connection, session and link handling the official service SDKs need to
// authenticate through claims-based security ($cbs put-token) and to send
// cloud-to-device messages to /messages/devicebound. It is written here,
// with no third-party dependency, and knows the hub only through
// hub.Hub's public methods.
package amqp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

const (
	maxChannel   = 255        // the highest channel, as the hub's open says
	maxHandle    = 255        // the highest link handle, as the hub's begin says
	maxFrameSize = 256 * 1024 // what the emulator accepts
	linkCredit   = 100        // credit granted to a client's sender link
	protoAMQP    = 0
	protoSASL    = 3
)

var errClosed = errors.New("amqp: connection closed")

// Server serves AMQP connections for a hub.
type Server struct {
	hub *hub.Hub
	log *slog.Logger

	mu     sync.Mutex
	conns  map[*conn]bool // guarded by mu
	closed bool           // guarded by mu
	wg     sync.WaitGroup
	panics atomic.Int64 // connections that ended in a recovered panic
}

// New returns the AMQP face of h.
func New(h *hub.Hub, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{hub: h, log: log, conns: map[*conn]bool{}}
}

// Serve accepts connections on ln until Close; ln is already TLS.
func (s *Server) Serve(ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.ServeConn(nc)
			}()
		}
	}()
}

// ServeConn serves one connection, already secured (TLS, or a WebSocket
// over HTTPS), until it ends.
func (s *Server) ServeConn(nc net.Conn) {
	c := &conn{s: s, nc: nc, r: bufio.NewReader(nc), sessions: map[uint16]*session{}, peerMaxFrame: 1 << 31}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	defer func() {
		// A bug in handling one client's frames must not stop the hub.
		if r := recover(); r != nil {
			s.panics.Add(1)
			s.log.Error("amqp connection failed", "remote", nc.RemoteAddr().String(), "panic", fmt.Sprint(r))
			nc.Close()
		}
	}()
	c.serve()
}

// Close closes every connection and waits for them; the caller closes the
// listener.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// conn is one client connection; one goroutine reads and handles its
// frames, writes are serialised.
type conn struct {
	s  *Server
	nc net.Conn
	r  *bufio.Reader

	wmu sync.Mutex

	// mu guards the connection's state below: the reader holds it while it
	// handles a frame, feedback senders while they queue a message.
	mu           sync.Mutex
	ctx          context.Context // ends with the connection
	peerMaxFrame uint32
	opened       bool
	authorized   bool // a valid service token was put on $cbs
	sessions     map[uint16]*session
	stopBeat     chan struct{}
}

// session is a begun session; channels are the client's, mirrored.
type session struct {
	channel        uint16
	nextIncomingID uint32
	nextOutgoingID uint32           // transfer-id: one per transfer frame
	nextDelivery   uint32           // delivery-id: one per message
	links          map[uint32]*link // by the client's handle
	refused        map[uint32]bool  // client handles of links the hub refused, awaiting their detach
	nextHandle     uint32
}

// link is an attached link, seen from the hub.
type link struct {
	name       string
	handle     uint32 // the hub's
	remote     uint32 // the client's
	receiving  bool   // the client sends on it
	address    string
	credit     uint32 // sending links: what the client granted
	delivery   uint32 // delivery-count
	pending    [][]byte
	stop       context.CancelFunc // ends the link's feedback sender
	received   uint32
	assembling []byte
	deliveryID uint32
	settled    bool
	inTransfer bool
}

func (c *conn) serve() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.ctx = ctx
	defer c.nc.Close()
	defer func() {
		if c.stopBeat != nil {
			close(c.stopBeat)
		}
	}()
	if err := c.handshake(); err != nil {
		c.s.log.Info("amqp connection refused", "remote", c.nc.RemoteAddr().String(), "reason", err.Error())
		return
	}
	for {
		typ, channel, body, err := c.readFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errClosed) {
				c.s.log.Info("amqp connection closed", "remote", c.nc.RemoteAddr().String(), "reason", err.Error())
			}
			return
		}
		if len(body) == 0 || typ != 0 {
			continue // heartbeat
		}
		perf, payload, err := wire.Decode(body)
		if err != nil {
			c.closeWith("amqp:decode-error", err.Error())
			return
		}
		d, ok := perf.(*wire.Described)
		var fields []any
		if ok {
			fields, _ = d.Value.([]any)
		}
		if fields == nil {
			c.closeWith("amqp:decode-error", "a frame without a performative")
			return
		}
		if err := c.handleLocked(d.Code(), channel, fields, payload); err != nil {
			if !errors.Is(err, errClosed) {
				c.closeWith("amqp:internal-error", err.Error())
			}
			return
		}
	}
}

// handshake exchanges protocol headers, with SASL first if the client
// asks for it. Any mechanism is accepted: clients authenticate with a
// token put on $cbs.
func (c *conn) handshake() error {
	_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.nc.SetReadDeadline(time.Time{})
	proto, err := c.readHeader()
	if err != nil {
		return err
	}
	if proto == protoSASL {
		if err := c.write([]byte{'A', 'M', 'Q', 'P', protoSASL, 1, 0, 0}); err != nil {
			return err
		}
		mechs := wire.Describe(wire.DescSASLMechanisms, []any{[]wire.Symbol{"ANONYMOUS", "PLAIN", "MSSBCBS", "EXTERNAL"}})
		if err := c.writeFrame(1, 0, mechs, nil); err != nil {
			return err
		}
		typ, _, body, err := c.readFrame()
		if err != nil {
			return err
		}
		init, _, err := wire.Decode(body)
		if d, ok := init.(*wire.Described); err != nil || typ != 1 || !ok || d.Code() != wire.DescSASLInit {
			return errors.New("expected sasl-init")
		}
		if err := c.writeFrame(1, 0, wire.Describe(wire.DescSASLOutcome, []any{uint8(0)}), nil); err != nil {
			return err
		}
		if proto, err = c.readHeader(); err != nil {
			return err
		}
	}
	if proto != protoAMQP {
		return fmt.Errorf("protocol id %d", proto)
	}
	return c.write([]byte{'A', 'M', 'Q', 'P', protoAMQP, 1, 0, 0})
}

func (c *conn) readHeader() (byte, error) {
	var h [8]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, err
	}
	if string(h[:4]) != "AMQP" || h[5] != 1 || h[6] != 0 {
		_ = c.write([]byte{'A', 'M', 'Q', 'P', protoAMQP, 1, 0, 0})
		return 0, fmt.Errorf("not an AMQP 1.0 header: %q", h[:])
	}
	return h[4], nil
}

func (c *conn) readFrame() (typ byte, channel uint16, body []byte, err error) {
	return wire.ReadFrame(c.r, maxFrameSize)
}

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// writeFrame writes one frame: a performative and its payload.
func (c *conn) writeFrame(typ byte, channel uint16, perf *wire.Described, payload []byte) error {
	b, err := wire.AppendFrame(make([]byte, 0, 64+len(payload)), typ, channel, perf, payload)
	if err != nil {
		return err
	}
	return c.write(b)
}

func perf(code uint64, fields ...any) *wire.Described { return wire.Describe(code, fields) }

// amqpError builds an error value.
func amqpError(condition, description string) *wire.Described {
	return perf(wire.DescError, wire.Symbol(condition), description)
}

// closeWith closes the connection with an error.
func (c *conn) closeWith(condition, description string) {
	c.s.log.Info("amqp connection closed", "remote", c.nc.RemoteAddr().String(), "condition", condition, "reason", description)
	_ = c.writeFrame(0, 0, perf(wire.DescClose, amqpError(condition, description)), nil)
}

// handleLocked handles one frame holding c.mu.
func (c *conn) handleLocked(code uint64, channel uint16, f []any, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handle(code, channel, f, payload)
}

func (c *conn) handle(code uint64, channel uint16, f []any, payload []byte) error {
	switch code {
	case wire.DescOpen:
		return c.onOpen(f)
	case wire.DescClose:
		_ = c.writeFrame(0, 0, perf(wire.DescClose), nil)
		return errClosed
	case wire.DescBegin:
		if wire.Field(f, 0) != nil {
			return errors.New("begin answering a session the hub did not start")
		}
		if c.sessions[channel] != nil || len(c.sessions) > maxChannel {
			return fmt.Errorf("begin on channel %d, which is in use or over the limit", channel)
		}
		s := &session{channel: channel, links: map[uint32]*link{}, refused: map[uint32]bool{}}
		next, _ := wire.AsUint(wire.Field(f, 1))
		s.nextIncomingID = uint32(next)
		c.sessions[channel] = s
		return c.writeFrame(0, channel, perf(wire.DescBegin, channel, uint32(0), uint32(5000), uint32(5000), uint32(maxHandle)), nil)
	}
	s := c.sessions[channel]
	if s == nil {
		return fmt.Errorf("a frame on channel %d, which has no session", channel)
	}
	switch code {
	case wire.DescEnd:
		for _, l := range s.links {
			if l.stop != nil {
				l.stop()
			}
		}
		delete(c.sessions, channel)
		return c.writeFrame(0, channel, perf(wire.DescEnd), nil)
	case wire.DescAttach:
		return c.onAttach(s, f)
	case wire.DescDetach:
		h, _ := wire.AsUint(wire.Field(f, 0))
		if s.refused[uint32(h)] {
			delete(s.refused, uint32(h)) // the client's half of a refusal
			return nil
		}
		l := s.links[uint32(h)]
		if l == nil {
			return fmt.Errorf("detach of unknown handle %d", h)
		}
		delete(s.links, uint32(h))
		if l.stop != nil {
			l.stop()
		}
		return c.writeFrame(0, s.channel, perf(wire.DescDetach, l.handle, true), nil)
	case wire.DescFlow:
		return c.onFlow(s, f)
	case wire.DescTransfer:
		return c.onTransfer(s, f, payload)
	case wire.DescDisposition:
		return nil // the hub's own transfers are sent settled
	}
	return fmt.Errorf("unexpected performative %#x", code)
}

func (c *conn) onOpen(f []any) error {
	if c.opened {
		return errors.New("a second open")
	}
	c.opened = true
	if mf, ok := wire.AsUint(wire.Field(f, 2)); ok && mf >= 512 {
		c.peerMaxFrame = uint32(min(mf, 1<<31))
	}
	reply := perf(wire.DescOpen, "iothub-emulator", nil, uint32(maxFrameSize), uint16(maxChannel))
	if err := c.writeFrame(0, 0, reply, nil); err != nil {
		return err
	}
	// The client's idle time-out is how long it waits for a frame: send
	// an empty one at half of it.
	if idle, ok := wire.AsUint(wire.Field(f, 4)); ok && idle > 0 {
		c.stopBeat = make(chan struct{})
		go c.heartbeat(time.Duration(idle) * time.Millisecond / 2)
	}
	return nil
}

func (c *conn) heartbeat(every time.Duration) {
	t := time.NewTicker(max(every, 100*time.Millisecond))
	defer t.Stop()
	empty := []byte{0, 0, 0, 8, 2, 0, 0, 0}
	for {
		select {
		case <-c.stopBeat:
			return
		case <-t.C:
			if c.write(empty) != nil {
				return
			}
		}
	}
}

// addressOf reads the address of a source or target.
func addressOf(v any) string {
	d, ok := v.(*wire.Described)
	if !ok {
		return ""
	}
	l, _ := d.Value.([]any)
	return wire.AsString(wire.Field(l, 0))
}

func (c *conn) onAttach(s *session, f []any) error {
	name := wire.AsString(wire.Field(f, 0))
	remote, _ := wire.AsUint(wire.Field(f, 1))
	if s.links[uint32(remote)] != nil || s.refused[uint32(remote)] || len(s.links)+len(s.refused) > maxHandle {
		return fmt.Errorf("attach on handle %d, which is in use or over the limit", remote)
	}
	clientReceives, _ := wire.Field(f, 2).(bool)
	l := &link{name: name, handle: s.nextHandle, remote: uint32(remote), receiving: !clientReceives}
	s.nextHandle++
	if l.receiving {
		l.address = addressOf(wire.Field(f, 6))
	} else {
		l.address = addressOf(wire.Field(f, 5))
	}
	supported := l.address == wire.CBSNode || (l.receiving && l.address == wire.C2DNode) || (!l.receiving && l.address == wire.FeedbackNode)
	reply := []any{name, l.handle, !clientReceives, wire.Field(f, 3), wire.Field(f, 4), wire.Field(f, 5), wire.Field(f, 6)}
	if !supported {
		// Refused the AMQP way: an attach without the terminus, then a
		// detach with the reason.
		reply[5], reply[6] = nil, nil
		if !l.receiving {
			reply[5] = wire.Field(f, 5)
		} else {
			reply[6] = wire.Field(f, 6)
		}
		if err := c.writeFrame(0, s.channel, perf(wire.DescAttach, reply...), nil); err != nil {
			return err
		}
		s.refused[l.remote] = true
		c.s.log.Info("amqp link refused", "address", l.address)
		return c.writeFrame(0, s.channel, perf(wire.DescDetach, l.handle, true,
			amqpError("amqp:not-implemented", fmt.Sprintf("the emulator does not serve %q over AMQP", l.address))), nil)
	}
	if !l.receiving {
		reply = append(reply, nil, false, uint32(0))
	}
	s.links[l.remote] = l
	if err := c.writeFrame(0, s.channel, perf(wire.DescAttach, reply...), nil); err != nil {
		return err
	}
	if l.receiving {
		dc, _ := wire.AsUint(wire.Field(f, 9))
		l.delivery = uint32(dc)
		return c.grant(s, l)
	}
	if l.address == wire.FeedbackNode {
		ctx, stop := context.WithCancel(c.ctx)
		l.stop = stop
		go c.sendFeedback(ctx, s, l)
	}
	return nil
}

// grant gives the client's sender link fresh credit.
func (c *conn) grant(s *session, l *link) error {
	l.received = 0
	return c.writeFrame(0, s.channel, perf(wire.DescFlow, s.nextIncomingID, uint32(5000), s.nextOutgoingID, uint32(5000),
		l.handle, l.delivery, uint32(linkCredit)), nil)
}

func (c *conn) onFlow(s *session, f []any) error {
	h, ok := wire.AsUint(wire.Field(f, 4))
	if !ok {
		return nil // session flow only
	}
	l := s.links[uint32(h)]
	if l == nil || l.receiving {
		return nil
	}
	dc, _ := wire.AsUint(wire.Field(f, 5))
	credit, _ := wire.AsUint(wire.Field(f, 6))
	// Credit counts from the delivery-count the client last saw.
	if uint32(dc)+uint32(credit) > l.delivery {
		l.credit = uint32(dc) + uint32(credit) - l.delivery
	} else {
		l.credit = 0
	}
	return c.flush(s, l)
}

// send queues a message on one of the hub's sending links.
func (c *conn) send(s *session, l *link, msg []byte) error {
	l.pending = append(l.pending, msg)
	return c.flush(s, l)
}

// flush sends queued messages while the client gives credit; they go
// pre-settled, split into frames no larger than the client accepts.
func (c *conn) flush(s *session, l *link) error {
	room := int(c.peerMaxFrame) - 64 // the frame header and the transfer performative
	for len(l.pending) > 0 && l.credit > 0 {
		msg := l.pending[0]
		l.pending = l.pending[1:]
		var tag [4]byte
		binary.BigEndian.PutUint32(tag[:], l.delivery)
		for first := true; first || len(msg) > 0; first = false {
			part := msg[:min(len(msg), room)]
			msg = msg[len(part):]
			more := len(msg) > 0
			t := perf(wire.DescTransfer, l.handle, nil, nil, nil, nil, more)
			if first {
				t = perf(wire.DescTransfer, l.handle, s.nextDelivery, tag[:], uint32(0), true, more)
			}
			if err := c.writeFrame(0, s.channel, t, part); err != nil {
				return err
			}
			s.nextOutgoingID++
		}
		s.nextDelivery++
		l.delivery++
		l.credit--
	}
	return nil
}

func (c *conn) onTransfer(s *session, f []any, payload []byte) error {
	s.nextIncomingID++
	h, _ := wire.AsUint(wire.Field(f, 0))
	l := s.links[uint32(h)]
	if l == nil || !l.receiving {
		return fmt.Errorf("transfer on handle %d, which is not a link the client sends on", h)
	}
	if !l.inTransfer {
		id, _ := wire.AsUint(wire.Field(f, 1))
		settled, _ := wire.Field(f, 4).(bool)
		l.deliveryID, l.settled, l.inTransfer, l.assembling = uint32(id), settled, true, l.assembling[:0]
	}
	if len(l.assembling)+len(payload) > 2*maxMessage {
		return errors.New("a message larger than the hub accepts")
	}
	l.assembling = append(l.assembling, payload...)
	if more, _ := wire.Field(f, 5).(bool); more {
		return nil
	}
	l.inTransfer = false
	l.delivery++
	l.received++
	outcome := c.deliver(s, l, l.assembling)
	if !l.settled {
		if err := c.writeFrame(0, s.channel, perf(wire.DescDisposition, true, l.deliveryID, nil, true, outcome), nil); err != nil {
			return err
		}
	}
	if l.received >= linkCredit/2 {
		return c.grant(s, l)
	}
	return nil
}
