package amqp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
)

const (
	maxChannel   = 255        // the highest channel, as the engine's open says
	maxHandle    = 255        // the highest link handle, as the engine's begin says
	maxFrameSize = 256 * 1024 // the largest frame the engine accepts
	window       = 5000       // the session windows the engine advertises
	// maxQueued bounds the bytes waiting for a client that does not read;
	// past it the connection is closed.
	maxQueued = 16 << 20
	// maxWrite bounds the frames gathered into one socket write.
	maxWrite = 64 << 10
)

var errClosed = errors.New("amqp: connection closed")

// conn is one client connection.
type conn struct {
	s      *Server
	nc     net.Conn
	r      *bufio.Reader
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc

	// The write queue: frames wait here for the writer goroutine.
	wmu       sync.Mutex
	wq        [][]byte // guarded by wmu
	wqBytes   int      // guarded by wmu
	finishing bool     // guarded by wmu; the writer ends when the queue is empty
	wsig      chan struct{}

	mu           sync.Mutex
	peerMaxFrame uint32              // guarded by mu; the client's max-frame-size
	opened       bool                // guarded by mu
	beatEvery    time.Duration       // guarded by mu; half the client's idle time-out
	sessions     map[uint16]*session // guarded by mu; by the client's channel
	claims       []Claim             // guarded by mu; what put-tokens granted
	expiryTimer  *time.Timer         // guarded by mu; fires at the earliest claim expiry a link requires
	saslUser     string              // the SASL PLAIN user name, if any; set before the reader starts
	hostname     string              // guarded by mu; the host name of the client's open
	shared       map[any]any         // guarded by mu; the faces' values for this connection (Link.Shared)
	cleanups     []func()            // guarded by mu; run when the connection ends

	nodes sync.WaitGroup // the nodes' Serve goroutines
}

func (c *conn) remote() string { return c.nc.RemoteAddr().String() }

// armExpiryLocked sets the expiry timer to the earliest expiry, still to
// come, of the connection's claims, if a link requires one. The caller
// holds c.mu.
func (c *conn) armExpiryLocked() {
	now := c.s.cfg.Now()
	var next time.Time
	for _, cl := range c.claims {
		if cl.Expiry.After(now) && (next.IsZero() || cl.Expiry.Before(next)) {
			next = cl.Expiry
		}
	}
	if next.IsZero() || !c.anyRequireLocked() {
		return
	}
	d := next.Sub(now)
	if c.expiryTimer == nil {
		c.expiryTimer = time.AfterFunc(d, c.expireLinks)
		return
	}
	c.expiryTimer.Reset(d)
}

func (c *conn) anyRequireLocked() bool {
	for _, s := range c.sessions {
		for _, l := range s.links {
			if l.require != nil && !l.detached && !l.ended {
				return true
			}
		}
	}
	return false
}

// expireLinks detaches the links whose claims have all expired, and arms
// the timer for the next expiry.
func (c *conn) expireLinks() {
	now := c.s.cfg.Now()
	c.mu.Lock()
	var gone []*Link
	for _, s := range c.sessions {
		for _, l := range s.links {
			if l.require == nil || l.detached || l.ended {
				continue
			}
			ok := false
			for _, cl := range c.claims {
				if now.Before(cl.Expiry) && l.require(cl) {
					ok = true
					break
				}
			}
			if !ok {
				gone = append(gone, l)
			}
		}
	}
	c.armExpiryLocked()
	c.mu.Unlock()
	for _, l := range gone {
		c.s.log.Info("amqp link detached: its token expired", "remote", c.remote(), "address", l.Address)
		l.Detach(wire.Errorf("amqp:unauthorized-access", "the token of this link expired; put a new one on $cbs before it does"))
	}
}

// stop ends the connection: the socket closes, the reader and writer end.
func (c *conn) stop() {
	c.cancel()
	c.nc.Close()
	c.mu.Lock()
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
	c.mu.Unlock()
}

// runCleanups runs the faces' cleanups of the connection's shared values.
func (c *conn) runCleanups() {
	c.mu.Lock()
	cleanups := c.cleanups
	c.cleanups, c.shared = nil, nil
	c.mu.Unlock()
	for _, f := range cleanups {
		f()
	}
}

func (c *conn) serve() {
	defer c.stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.writeLoop()
	}()
	defer wg.Wait()
	defer c.finish()
	defer c.runCleanups()
	defer c.detachAll()
	if c.s.pending.Add(1) > int64(c.s.cfg.MaxPending) {
		c.s.pending.Add(-1)
		c.s.log.Warn("amqp connection refused: too many connections are in their handshake", "remote", c.remote(), "limit", c.s.cfg.MaxPending)
		return
	}
	err := c.handshake()
	c.s.pending.Add(-1)
	if err != nil {
		lvl := slog.LevelInfo
		if errors.Is(err, io.EOF) {
			// Closed before its protocol header: a port probe, such as
			// the admin listener's /health, not a client worth a line.
			lvl = slog.LevelDebug
		}
		c.s.log.Log(c.ctx, lvl, "amqp connection refused", "remote", c.remote(), "reason", err.Error())
		return
	}
	for {
		typ, channel, body, err := wire.ReadFrame(c.r, maxFrameSize)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.ctx.Err() == nil {
				c.s.log.Info("amqp connection closed", "remote", c.remote(), "reason", err.Error())
			}
			return
		}
		c.extendIdle()
		if len(body) == 0 || typ != wire.FrameAMQP {
			continue // a heartbeat
		}
		p, payload, err := wire.Unmarshal(body)
		if err != nil {
			c.closeWith(wire.Errorf("amqp:decode-error", "%v", err))
			return
		}
		if err := c.handle(channel, p, payload); err != nil {
			if !errors.Is(err, errClosed) {
				var ae *wire.Error
				if !errors.As(err, &ae) {
					ae = wire.Errorf("amqp:internal-error", "%v", err)
				}
				c.closeWith(ae)
			}
			return
		}
	}
}

// extendIdle moves the read deadline: twice the advertised idle time-out
// from now (AMQP 1.0 part 2.4.5).
func (c *conn) extendIdle() {
	_ = c.nc.SetReadDeadline(time.Now().Add(2 * c.s.cfg.IdleTimeout))
}

// handshake exchanges protocol headers, with SASL first if the client asks
// for it. ANONYMOUS, PLAIN and EXTERNAL are accepted: clients prove who they
// are with tokens put on $cbs, or with a SASL PLAIN password the face
// checks as a token (next-wave-protocols §1.3).
func (c *conn) handshake() error {
	_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	proto, err := c.readHeader()
	if err != nil {
		return err
	}
	if proto == 3 {
		c.queue(wire.HeaderSASL)
		c.queueFrame(0, &wire.SASLMechanisms{Mechanisms: []wire.Symbol{"ANONYMOUS", "PLAIN", "MSSBCBS", "EXTERNAL"}}, nil)
		typ, _, body, err := wire.ReadFrame(c.r, maxFrameSize)
		if err != nil {
			return err
		}
		p, _, err := wire.Unmarshal(body)
		init, ok := p.(*wire.SASLInit)
		if err != nil || typ != wire.FrameSASL || !ok {
			return errors.New("expected sasl-init")
		}
		code := wire.SASLOK
		if init.Mechanism == "PLAIN" {
			if err := c.plain(init.InitialResponse); err != nil {
				c.s.log.Info("amqp sasl plain refused", "remote", c.remote(), "reason", err.Error())
				code = wire.SASLAuth
			}
		}
		c.queueFrame(0, &wire.SASLOutcome{Code: code}, nil)
		if code != wire.SASLOK {
			return errors.New("sasl authentication failed")
		}
		if proto, err = c.readHeader(); err != nil {
			return err
		}
	}
	if proto != 0 {
		return fmt.Errorf("protocol id %d", proto)
	}
	c.queue(wire.HeaderAMQP)
	c.extendIdle()
	return nil
}

// plain takes a SASL PLAIN response, "\0user\0password", whose password is
// a token: it counts as put for the user's hub (next-wave-protocols §1.3).
func (c *conn) plain(resp []byte) error {
	parts := bytes.SplitN(resp, []byte{0}, 3)
	if len(parts) != 3 {
		return errors.New("a PLAIN response that is not authzid\\0user\\0password")
	}
	c.saslUser = string(parts[1])
	if c.s.cfg.Authorize == nil {
		return errors.New("no token is accepted")
	}
	claim, err := c.s.cfg.Authorize("", "sasl-plain:"+c.saslUser, string(parts[2]))
	if err != nil {
		return err
	}
	c.claims = append(c.claims, claim)
	return nil
}

func (c *conn) readHeader() (byte, error) {
	var h [8]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, err
	}
	if string(h[:4]) != "AMQP" || h[5] != 1 || h[6] != 0 {
		c.queue(wire.HeaderAMQP)
		return 0, fmt.Errorf("not an AMQP 1.0 header: %q", h[:])
	}
	return h[4], nil
}

// queue hands bytes to the writer. A client that lets too much pile up
// is disconnected.
func (c *conn) queue(b []byte) {
	c.wmu.Lock()
	c.wq = append(c.wq, b)
	c.wqBytes += len(b)
	over := c.wqBytes > maxQueued
	c.wmu.Unlock()
	if over {
		c.s.log.Info("amqp connection closed", "remote", c.remote(), "reason", "the client does not read")
		c.stop()
		return
	}
	select {
	case c.wsig <- struct{}{}:
	default:
	}
}

// queueFrame queues one frame: a performative and its payload.
func (c *conn) queueFrame(channel uint16, p wire.Performative, payload []byte) {
	b, err := wire.AppendFrame(make([]byte, 0, 64+len(payload)), channel, p, payload)
	if err != nil {
		c.s.log.Error("amqp frame not encoded", "error", err)
		c.stop()
		return
	}
	c.queue(b)
}

// writeLoop writes queued frames until the connection ends; each write
// has a deadline, and a heartbeat goes out when nothing else has for half
// the client's idle time-out.
func (c *conn) writeLoop() {
	beat := time.NewTimer(time.Hour)
	defer beat.Stop()
	var buf []byte // frames gathered into one write, up to maxWrite
	flush := func() bool {
		if len(buf) == 0 {
			return true
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		_, err := c.nc.Write(buf)
		buf = buf[:0]
		return err == nil
	}
	for {
		c.wmu.Lock()
		q := c.wq
		c.wq, c.wqBytes = nil, 0
		c.wmu.Unlock()
		for _, b := range q {
			if len(buf)+len(b) > maxWrite && !flush() {
				c.stop()
				return
			}
			buf = append(buf, b...)
		}
		if !flush() {
			c.stop()
			return
		}
		c.wmu.Lock()
		done := c.finishing && len(c.wq) == 0
		c.wmu.Unlock()
		if done {
			c.nc.Close() // everything went out: the reader ends too
			return
		}
		beat.Reset(c.heartbeatEvery())
		select {
		case <-c.ctx.Done():
			return
		case <-c.wsig:
		case <-beat.C:
			c.queue(wire.Heartbeat)
		}
	}
}

// heartbeatEvery is half the client's idle time-out, or an hour when it
// has none.
func (c *conn) heartbeatEvery() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.beatEvery
}

// closeWith closes the connection with an error; the caller then returns
// from serve, and the writer sends the close before the socket ends.
func (c *conn) closeWith(e *wire.Error) {
	c.s.log.Info("amqp connection closed", "remote", c.remote(), "condition", string(e.Condition), "reason", e.Description)
	c.queueFrame(0, &wire.Close{Error: e}, nil)
}

// finish tells the writer to end once the queue is empty.
func (c *conn) finish() {
	c.wmu.Lock()
	c.finishing = true
	c.wmu.Unlock()
	select {
	case c.wsig <- struct{}{}:
	default:
	}
}
