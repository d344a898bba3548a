// Package broker is the hub's MQTT face: an embedded mochi-mqtt server
// extended through one hook, speaking the IoT Hub device protocol over MQTT
// 3.1.1 on TLS connections, and on WebSocket connections the front door
// (wsgate) hands it. It is the only package that imports mochi-mqtt.
//
// The broker never routes messages between clients: every subscriber
// selection is emptied, so nothing a device publishes reaches another
// device. Device publishes are handed to the hub, and the hub's deliveries
// (method requests, twin responses, desired notifications) are written to
// the one connection they belong to.
//
// # Writes to a device
//
// The hub's deliveries are queued on the device's link and written by a
// goroutine that runs only while the queue is not empty, so the hub never
// waits on a device's socket (and never holds a lock across its write).
// The PUBACKs of QoS 1 publishes go through the same queue, each once its
// message is durable, so a device keeps several messages in flight and
// its acknowledgements stay in order.
// Every write to a device has a deadline (Config.WriteTimeout); a device
// whose socket stays full past it, or whose queue overflows, is
// disconnected.
package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/emulator/internal/accept"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// Config configures a Broker. The zero value is the default.
type Config struct {
	// Logger receives structured logs. Zero means slog.Default().
	Logger *slog.Logger
	// Lenient answers an invalid subscription with SUBACK 0x80 instead of
	// closing the connection as IoT Hub does (device-protocol §5.1).
	Lenient bool
	// WriteTimeout bounds each write to a device. Zero means 10 s.
	WriteTimeout time.Duration
	// ConnectTimeout bounds the time from a connection's first byte to
	// its CONNECT (the TLS handshake included); a client that sends none
	// is closed. Zero means 10 s.
	ConnectTimeout time.Duration
	// MaxPending bounds the connections that have not authenticated yet
	// (TLS handshake or CONNECT under way); one more is closed at once.
	// Zero means 4096.
	MaxPending int
}

// maxPacket bounds every packet a device sends, CONNECT included, so
// nothing larger is buffered before a client has authenticated: a
// telemetry message of 256 KB with its topic and properties fits.
const maxPacket = maxTelemetry + 64*1024

// Broker serves devices over MQTT.
type Broker struct {
	hub *hub.Hub
	srv *mqtt.Server
	log *slog.Logger
	cfg Config

	pending atomic.Int64 // connections not yet authenticated
	links   sync.Map     // *mqtt.Client → *link
	expiry  sync.Map     // *mqtt.Client → time.Time, between authentication and session start
	wg      sync.WaitGroup
	drains  sync.WaitGroup // the links' writer goroutines
	mu      sync.Mutex
	lns     []net.Listener // guarded by mu
	closing bool           // guarded by mu
}

// New returns a broker for h; call Start, then Serve or ServeConn.
func New(h *hub.Hub, cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = 4096
	}
	caps := mqtt.NewDefaultServerCapabilities()
	// mochi queues only what it routes between clients, and the broker
	// routes nothing: a short queue saves 64 KiB a device.
	caps.MaximumClientWritesPending = 16
	caps.MaximumQos = 1             // QoS 2 subscriptions are granted 1 (device-protocol §5.1)
	caps.RetainAvailable = 0        // the hub never retains (device-protocol §12)
	caps.MinimumProtocolVersion = 4 // MQTT 3.1.1 only
	caps.SharedSubAvailable = 0
	caps.MaximumPacketSize = maxPacket
	// The hub keeps persistent sessions (subscriptions, pending C2D) in
	// its store; mochi would keep every disconnected persistent client in
	// memory for ever (about 85 KB each). With no expiry its per-second
	// sweep forgets them, and OnSessionEstablish gives a reconnecting
	// device a placeholder so its CONNACK still says session present.
	caps.MaximumSessionExpiryInterval = 0
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       cfg.Logger.With("component", "mqtt"),
	})
	b := &Broker{hub: h, srv: srv, log: cfg.Logger, cfg: cfg}
	if err := srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker hook: %w", err)
	}
	return b, nil
}

// Start starts the broker's housekeeping (client expiry and timers).
func (b *Broker) Start() error { return b.srv.Serve() }

// Serve accepts MQTT connections on ln (usually a TLS listener) until ln is
// closed. It returns at once; Close stops it.
func (b *Broker) Serve(ln net.Listener) {
	b.mu.Lock()
	b.lns = append(b.lns, ln)
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		accept.Loop(ln, b.log, "mqtt", func(c net.Conn) { b.establish("mqtts", c) })
	}()
}

// establish runs one connection in its own goroutine.
func (b *Broker) establish(listener string, c net.Conn) {
	if !b.track(c) {
		return
	}
	go func() {
		defer b.wg.Done()
		b.serveConn(listener, c)
	}()
}

// ServeConn serves one MQTT connection that arrived another way (a
// WebSocket, say) until it ends.
func (b *Broker) ServeConn(c net.Conn) {
	if !b.track(c) {
		return
	}
	defer b.wg.Done()
	b.serveConn("wss", c)
}

// track counts a connection in b.wg, or closes it if the broker is
// closing.
func (b *Broker) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		c.Close()
		return false
	}
	b.wg.Add(1)
	return true
}

func (b *Broker) serveConn(listener string, c net.Conn) {
	if b.pending.Add(1) > int64(b.cfg.MaxPending) {
		b.pending.Add(-1)
		b.log.Warn("mqtt connection refused: too many connections have not authenticated yet", "remote", c.RemoteAddr().String(), "limit", b.cfg.MaxPending)
		c.Close()
		return
	}
	// Until its CONNECT, which sets the keep-alive deadline.
	_ = c.SetReadDeadline(time.Now().Add(b.cfg.ConnectTimeout))
	dc := &deadlineConn{Conn: c, timeout: b.cfg.WriteTimeout, pending: &b.pending}
	defer dc.authenticated() // if it never did
	if err := b.srv.EstablishConnection(listener, dc); err != nil && !isClosed(err) {
		b.log.Debug("mqtt connection ended", "remote", c.RemoteAddr().String(), "error", err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, packets.CodeDisconnect)
}

// Clients counts the MQTT clients the broker holds, connected or not.
func (b *Broker) Clients() int { return b.srv.Clients.Len() }

// Close closes the listeners and every connection and waits for them.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closing = true
	for _, ln := range b.lns {
		ln.Close()
	}
	b.mu.Unlock()
	for _, cl := range b.srv.Clients.GetAll() {
		cl.Stop(errors.New("emulator shutting down"))
	}
	b.wg.Wait()
	b.drains.Wait()
	return b.srv.Close()
}

// deadlineConn gives every write to a device a deadline.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	pending *atomic.Int64 // counts the connection until it authenticates
	once    sync.Once
}

// authenticated takes the connection off the pending count, once.
func (c *deadlineConn) authenticated() { c.once.Do(func() { c.pending.Add(-1) }) }

func (c *deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// ConnectionState gives the TLS state of the connection underneath, for
// X.509 devices.
func (c *deadlineConn) ConnectionState() tls.ConnectionState {
	if t, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return t.ConnectionState()
	}
	return tls.ConnectionState{}
}

// maxQueue bounds the hub's deliveries waiting for one device.
const maxQueue = 1024

// maxPendingAcks bounds the PUBACKs of one device waiting for their
// messages to be durable; past it the device's reads wait.
const maxPendingAcks = 256

// link is a device connection: the hub's Link over a mochi client.
type link struct {
	b     *Broker
	cl    *mqtt.Client
	conn  *hub.Conn
	rid   uint64            // guarded by mu; method request ids
	pid   uint32            // guarded by mu; C2D packet ids
	c2d   map[uint16]string // guarded by mu; C2D packet id → lock token
	mu    sync.Mutex
	timer *time.Timer
	will  *pendingWill
	// c2dAtMostOnce: the device's C2D subscription was granted QoS 0.
	c2dAtMostOnce atomic.Bool

	qmu     sync.Mutex
	queue   []delivery // guarded by qmu; deliveries waiting to be written
	acks    int        // guarded by qmu; PUBACKs in the queue
	writing bool       // guarded by qmu; a writer goroutine is running
}

// delivery is one write to a device: a packet, written once wait, if
// set, says the publish it acknowledges is durable.
type delivery struct {
	pk   packets.Packet
	wait func() error
	sent func() // if set, called once pk is written
}

// pendingWill is a device's will, published as its telemetry if the
// connection ends without DISCONNECT.
type pendingWill struct {
	topic   string
	payload []byte
}

func (b *Broker) linkOf(cl *mqtt.Client) *link {
	v, ok := b.links.Load(cl)
	if !ok {
		return nil
	}
	return v.(*link)
}
