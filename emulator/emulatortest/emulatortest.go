// Package emulatortest runs a whole emulator inside a test: bbolt in
// t.TempDir(), MQTT, HTTPS and admin listeners on 127.0.0.1:0, the
// well-known development keys, everything stopped at cleanup. Device and
// service connection strings it hands out carry the listeners' ports
// (GatewayHostName for devices), so the project's own clients reach it.
package emulatortest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Env is a running emulator.
type Env struct {
	*server.Server
	cfg server.Config
	tb  testing.TB
}

// Option changes the emulator's configuration.
type Option func(*server.Config)

// WithDataDir uses dir instead of a new temporary directory (to restart
// an emulator on the same data).
func WithDataDir(dir string) Option { return func(c *server.Config) { c.DataDir = dir } }

// WithNoSync skips fsync (benchmarks).
func WithNoSync() Option { return func(c *server.Config) { c.NoSync = true } }

// WithConfig applies any change to the configuration.
func WithConfig(fn func(*server.Config)) Option { return Option(fn) }

// Start runs an emulator until the test ends. Logs go to the test log when
// -v is set.
func Start(tb testing.TB, opts ...Option) *Env {
	tb.Helper()
	cfg := server.Config{
		MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", AMQPPlainAddr: "127.0.0.1:0",
		Logger: testLogger(tb),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	s, err := server.Open(cfg)
	if err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	e := &Env{Server: s, cfg: cfg, tb: tb}
	tb.Cleanup(func() { s.Close() })
	return e
}

// Restart stops the emulator and starts a new one on the same data.
func (e *Env) Restart(tb testing.TB) *Env {
	tb.Helper()
	e.Close()
	cfg := e.cfg
	// The same ports again; a listener that was off stays off.
	bound := func(addr, configured string) string {
		if addr == "" {
			return configured
		}
		return addr
	}
	cfg.MQTTAddr, cfg.HTTPSAddr, cfg.AdminAddr = e.MQTTAddr(), e.HTTPSAddr(), e.AdminAddr()
	cfg.AMQPAddr, cfg.AMQPPlainAddr = bound(e.AMQPAddr(), cfg.AMQPAddr), bound(e.AMQPPlainAddr(), cfg.AMQPPlainAddr)
	return Start(tb, WithConfig(func(c *server.Config) { *c = cfg }))
}

func testLogger(tb testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) { w.tb.Log(string(p)); return len(p), nil }

var _ io.Writer = tbWriter{}

// TLSConfig trusts the emulator's CA and expects its certificate for
// localhost, for test clients that dial a listener themselves.
func (e *Env) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.CAPEM())
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// HTTPClient is an HTTP client that trusts the emulator's CA.
func (e *Env) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: e.TLSConfig()}}
}

// CAFile is the path of the emulator's CA certificate.
func (e *Env) CAFile() string { return e.CAPath() }

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// ServiceString returns the iothubowner connection string, its HostName
// carrying the HTTPS port.
func (e *Env) ServiceString() connstr.Service {
	cs, err := e.ServiceConnectionString("iothubowner")
	if err != nil {
		e.tb.Fatal(err)
	}
	s, _ := connstr.ParseService(cs)
	s.HostName = "localhost:" + port(e.HTTPSAddr())
	return s
}

// Service returns a service client for the emulator.
func (e *Env) Service(tb testing.TB) *iotservice.Client {
	tb.Helper()
	c, err := iotservice.New(e.ServiceString(), iotservice.Options{CAFile: e.CAFile(), AMQPAddr: e.AMQPAddr()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// AddDevice registers a device and returns its connection string, whose
// GatewayHostName points at the MQTT listener.
func (e *Env) AddDevice(tb testing.TB, id string) connstr.Device {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := e.Service(tb).CreateDevice(ctx, iothub.Device{DeviceID: id})
	if err != nil {
		tb.Fatalf("create device %s: %v", id, err)
	}
	return e.DeviceString(id, d.Authentication.SymmetricKey.PrimaryKey)
}

// DeviceString is the connection string of device id with key.
func (e *Env) DeviceString(id, key string) connstr.Device {
	return connstr.Device{HostName: e.HostName(), DeviceID: id, SharedAccessKey: key,
		GatewayHostName: "localhost:" + port(e.MQTTAddr())}
}

// WebSocketString is like DeviceString but reaches the HTTPS listener,
// for clients using MQTT over WebSocket.
func (e *Env) WebSocketString(cs connstr.Device) connstr.Device {
	return e.TransportString(cs, iotdevice.MQTTWS)
}

// TransportString is cs with its GatewayHostName on the listener of the
// transport: MQTT's, AMQP's, or HTTPS's for the WebSocket transports and
// HTTPS.
func (e *Env) TransportString(cs connstr.Device, t iotdevice.Transport) connstr.Device {
	addr := e.HTTPSAddr()
	switch t {
	case iotdevice.MQTT:
		addr = e.MQTTAddr()
	case iotdevice.AMQP:
		addr = e.AMQPAddr()
	}
	cs.GatewayHostName = "localhost:" + port(addr)
	return cs
}

// Dial connects a device client and closes it at cleanup.
func (e *Env) Dial(tb testing.TB, cs connstr.Device, opts iotdevice.Options) *iotdevice.Client {
	tb.Helper()
	opts.CAFile = e.CAFile()
	if opts.Logger == nil {
		opts.Logger = testLogger(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := iotdevice.Dial(ctx, cs, opts)
	if err != nil {
		tb.Fatalf("dial %s: %v", cs.DeviceID, err)
	}
	tb.Cleanup(c.Close)
	return c
}
