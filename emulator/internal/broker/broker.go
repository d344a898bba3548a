// Package broker is the hub's MQTT face: an embedded mochi-mqtt server
// extended through one hook, speaking the IoT Hub device protocol over MQTT
// 3.1.1 on TLS and WebSocket connections. It is the only package that
// imports mochi-mqtt (and gorilla/websocket, which mochi already uses).
//
// The broker never routes messages between clients: every subscriber
// selection is emptied, so nothing a device publishes reaches another
// device. Device publishes are handed to the hub, and the hub's deliveries
// (method requests, twin responses, desired notifications) are written to
// the one connection they belong to.
package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// Config configures a Broker. The zero value is the default.
type Config struct {
	// Logger receives structured logs. Zero means slog.Default().
	Logger *slog.Logger
	// Lenient answers an invalid subscription with SUBACK 0x80 instead of
	// closing the connection as IoT Hub does (device-protocol §5.1).
	Lenient bool
}

// Broker serves devices over MQTT.
type Broker struct {
	hub *hub.Hub
	srv *mqtt.Server
	log *slog.Logger
	cfg Config

	links   sync.Map // *mqtt.Client → *link
	expiry  sync.Map // *mqtt.Client → time.Time, between authentication and session start
	wg      sync.WaitGroup
	mu      sync.Mutex
	lns     []net.Listener // guarded by mu
	closing bool           // guarded by mu
}

// New returns a broker for h; call Start, then Serve or WebSocketHandler.
func New(h *hub.Hub, cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1             // QoS 2 subscriptions are granted 1 (device-protocol §5.1)
	caps.RetainAvailable = 0        // the hub never retains (device-protocol §12)
	caps.MinimumProtocolVersion = 4 // MQTT 3.1.1 only
	caps.SharedSubAvailable = 0
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
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					b.log.Error("mqtt accept failed", "error", err)
				}
				return
			}
			b.establish("mqtts", c)
		}
	}()
}

// establish runs one connection in its own goroutine.
func (b *Broker) establish(listener string, c net.Conn) {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		c.Close()
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		b.serveConn(listener, c)
	}()
}

func (b *Broker) serveConn(listener string, c net.Conn) {
	if err := b.srv.EstablishConnection(listener, c); err != nil && !isClosed(err) {
		b.log.Debug("mqtt connection ended", "remote", c.RemoteAddr().String(), "error", err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, packets.CodeDisconnect)
}

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
	return b.srv.Close()
}

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
