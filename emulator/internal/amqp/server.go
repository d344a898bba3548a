// Package amqp is the emulator's AMQP 1.0 connection engine: protocol
// headers and SASL, sessions, links, credit, settlement, heartbeats, and
// claims-based security ($cbs put-token). It knows no IoT Hub node of its
// own: each face registers the nodes it serves with Handle, as chi routes
// register handlers, and the engine routes every link attach to the node
// whose pattern matches its address. The IoT Hub service nodes
// (cloud-to-device send and feedback) are in service.go, the device and
// module links in device.go, the Event Hubs-compatible endpoint in
// eventhubs.go.
//
// # Concurrency
//
// One goroutine reads a connection's frames and calls the nodes; one
// goroutine writes its frames, each write bounded by Config.WriteTimeout,
// so no lock is ever held across network I/O. conn.mu guards the
// connection's sessions, links, credit and claims; it is taken briefly by
// the reader and by nodes' sending goroutines, and never while a node's
// callback runs. Server.mu guards the set of connections and is never
// taken while holding conn.mu.
package amqp

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/emulator/internal/accept"
)

// Config configures a Server. The zero value serves no node and refuses
// every token.
type Config struct {
	// Logger receives structured logs. Zero means slog.Default().
	Logger *slog.Logger
	// MaxPending bounds the connections still in their handshake
	// (protocol headers, SASL, open); one more is closed at once. Zero
	// means 4096.
	MaxPending int
	// Now is the clock claims expire by. Zero means time.Now.
	Now func() time.Time
	// Authorize checks a token put on $cbs for an audience and returns
	// the claim it grants. Nil refuses every token.
	Authorize func(audience, tokenType, token string) (Claim, error)
	// WriteTimeout bounds each write to a client; a client that does not
	// read for that long is disconnected. Zero means 10 s.
	WriteTimeout time.Duration
	// IdleTimeout is the idle time-out the engine advertises in its open:
	// a client that sends nothing, heartbeats included, for twice as long
	// is disconnected. Zero means 120 s (next-wave-protocols §0).
	IdleTimeout time.Duration
	// MaxMessageSize bounds a message a client sends. Zero means 1 MiB.
	MaxMessageSize int
}

// A Claim is what one put-token granted a connection.
type Claim struct {
	Audience string    // the audience the token was put for
	Subject  string    // whom it names: a policy, or a device identity
	Rights   uint64    // what it allows, in the face's own terms
	Expiry   time.Time // when it stops counting
}

// Server serves AMQP connections.
type Server struct {
	cfg    Config
	log    *slog.Logger
	routes []route // set before serving; read without a lock

	mu      sync.Mutex
	conns   map[*conn]bool // guarded by mu
	closed  bool           // guarded by mu
	wg      sync.WaitGroup
	panics  atomic.Int64 // connections that ended in a recovered panic
	pending atomic.Int64 // connections in their handshake
}

// New returns an engine serving no node yet.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = 4096
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 120 * time.Second
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 1 << 20
	}
	s := &Server{cfg: cfg, log: cfg.Logger, conns: map[*conn]bool{}}
	s.Handle(CBSNode, &RequestNode{Handle: s.putToken})
	return s
}

// Serve accepts connections on ln until Close; ln is already TLS, or
// plain TCP for clients that ask for no TLS.
func (s *Server) Serve(ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		accept.Loop(ln, s.log, "amqp", func(nc net.Conn) {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.ServeConn(nc)
			}()
		})
	}()
}

// ServeConn serves one connection, already secured (TLS, or a WebSocket
// over HTTPS), until it ends.
func (s *Server) ServeConn(nc net.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{s: s, nc: nc, r: bufio.NewReader(nc), ctx: ctx, cancel: cancel,
		sessions: map[uint16]*session{}, peerMaxFrame: 1 << 31, beatEvery: time.Hour, wsig: make(chan struct{}, 1)}
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
			c.stop()
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
		c.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
