// Package iotdevice is a device (or module) client for Azure IoT Hub over MQTT 3.1.1,
// on TLS (port 8883) or WebSocket (port 443). It connects with a device
// connection string, answers direct methods, reads and patches its twin,
// receives desired-property changes and sends telemetry.
//
// It works against real Azure IoT Hub with the system's root CAs, or
// against the emulator given its CA file: nothing else differs. Every topic
// comes from api/topic and every token from api/sas. It is the only package
// that imports the Paho MQTT client.
package iotdevice

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/internal/cafile"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// Options configures a Client. The zero value connects like the official
// SDKs: MQTT over TLS on port 8883 with the system root CAs.
type Options struct {
	// CAFile is a PEM file of CAs to trust instead of the system roots
	// (the emulator's ca.pem).
	CAFile string
	// Certificate is the client certificate of an X.509 identity; the
	// connection string then says x509=true.
	Certificate *tls.Certificate
	// WebSocket uses MQTT over WebSocket on port 443.
	WebSocket bool
	// HTTPSHost is host:port of the hub's HTTPS, where file uploads
	// begin. Zero means the host on 443.
	HTTPSHost string
	// TokenLifetime is how long each SAS token lives; the client reconnects
	// with a new one at 85 % of it. Zero means one hour.
	TokenLifetime time.Duration
	// KeepAlive is the MQTT keep-alive. Zero means 180 s, like the Node SDK.
	KeepAlive time.Duration
	// CleanSession asks for a clean session. The SDKs use a persistent one.
	CleanSession bool
	// ModelID is the IoT Plug and Play model (a DTMI) the device
	// implements, announced in CONNECT; the hub shows it as the twin's
	// modelId.
	ModelID string
	// Logger receives structured logs. Zero means slog.Default().
	Logger *slog.Logger
}

// APIVersion is the api-version the client sends.
const APIVersion = iothub.APIVersion

// MethodHandler answers a direct method: its status and a payload that is
// marshalled to JSON (nil sends null).
type MethodHandler func(ctx context.Context, payload json.RawMessage) (status int, response any)

// C2DHandler receives a cloud-to-device message. The client acknowledges
// it when the handler returns, which completes it at the hub.
type C2DHandler func(body []byte, props topic.Properties)

// DesiredHandler receives a desired-properties patch and its $version.
type DesiredHandler func(patch map[string]any, version int64)

// Client is a connected device.
type Client struct {
	cs   connstr.Device
	opts Options
	log  *slog.Logger
	cli  paho.Client

	mu       sync.Mutex
	methods  map[string]MethodHandler   // guarded by mu
	desired  DesiredHandler             // guarded by mu
	c2d      C2DHandler                 // guarded by mu
	events   chan func()                // desired patches and C2D messages, in order
	pending  map[string]chan twinResult // guarded by mu
	rid      atomic.Uint64
	desiredV atomic.Int64 // the newest desired $version delivered
	isClosed bool         // guarded by mu
	closed   chan struct{}
	wg       sync.WaitGroup
	connects atomic.Int64
}

type twinResult struct {
	status  int
	version int64
	body    []byte
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("iotdevice: client closed")

// New prepares a client; register handlers, then call Connect.
func New(cs connstr.Device, opts Options) (*Client, error) {
	if cs.X509 != (opts.Certificate != nil) {
		return nil, errors.New("iotdevice: an x509=true connection string needs Options.Certificate, and only it")
	}
	if !cs.X509 && cs.SharedAccessKey == "" {
		return nil, errors.New("iotdevice: only connection strings with SharedAccessKey or x509=true are supported")
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 180 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{cs: cs, opts: opts, log: opts.Logger.With("device", clientID(cs)),
		methods: map[string]MethodHandler{}, pending: map[string]chan twinResult{}, closed: make(chan struct{}),
		events: make(chan func(), 64)}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	po := paho.NewClientOptions().
		AddBroker(c.brokerURL()).
		SetClientID(clientID(cs)).
		SetCredentialsProvider(c.credentials).
		SetCleanSession(opts.CleanSession).
		SetProtocolVersion(4).
		SetTLSConfig(tlsCfg).
		SetKeepAlive(opts.KeepAlive).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetConnectTimeout(30 * time.Second).
		// Messages arrive in order on one goroutine, which never blocks:
		// methods are answered on goroutines of their own, and desired
		// patches and cloud-to-device messages go, in order, to the
		// client's event goroutine, which acknowledges each
		// cloud-to-device message after its handler returns.
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.log.Info("connection lost", "error", err) }).
		SetDefaultPublishHandler(c.onMessage)
	c.cli = paho.NewClient(po)
	return c, nil
}

// clientID is the MQTT client id: the device id, or {deviceId}/{moduleId}
// for a module (device-protocol §4.1).
func clientID(cs connstr.Device) string {
	if cs.ModuleID != "" {
		return cs.DeviceID + "/" + cs.ModuleID
	}
	return cs.DeviceID
}

// Dial is New followed by Connect.
func Dial(ctx context.Context, cs connstr.Device, opts Options) (*Client, error) {
	c, err := New(cs, opts)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) host() string {
	if c.cs.GatewayHostName != "" {
		return c.cs.GatewayHostName
	}
	return c.cs.HostName
}

// brokerURL is ssl://{host}:8883 or wss://{host}:443/$iothub/websocket; a
// port in the host (an emulator convenience) replaces the default.
func (c *Client) brokerURL() string {
	h := c.host()
	port := "8883"
	if c.opts.WebSocket {
		port = "443"
	}
	if hh, p, err := net.SplitHostPort(h); err == nil {
		h, port = hh, p
	}
	if c.opts.WebSocket {
		return "wss://" + net.JoinHostPort(h, port) + topic.WebSocketPath
	}
	return "ssl://" + net.JoinHostPort(h, port)
}

func (c *Client) tlsConfig() (*tls.Config, error) {
	h := c.host()
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	cfg := &tls.Config{ServerName: h, MinVersion: tls.VersionTLS12}
	if c.opts.Certificate != nil {
		cfg.Certificates = []tls.Certificate{*c.opts.Certificate}
	}
	if c.opts.CAFile != "" {
		pool, err := cafile.Pool(c.opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("iotdevice: %w", err)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// credentials gives the username and a fresh SAS token at every connect
// (device-protocol §3, §4.1); an X.509 identity sends no password.
func (c *Client) credentials() (string, string) {
	u := topic.Username{Host: c.cs.HostName, DeviceID: c.cs.DeviceID, ModuleID: c.cs.ModuleID, APIVersion: APIVersion, ModelID: c.opts.ModelID, DeviceClientType: "iothub-emulator-go/1"}
	if c.cs.X509 {
		return u.String(), ""
	}
	res := sas.DeviceResource(c.cs.HostName, c.cs.DeviceID, c.cs.ModuleID)
	tok, err := sas.New(res, c.cs.SharedAccessKeyName, c.cs.SharedAccessKey, time.Now().Add(c.opts.TokenLifetime))
	if err != nil {
		c.log.Error("cannot sign a SAS token", "error", err)
		return u.String(), ""
	}
	return u.String(), tok.String()
}

// Connect connects, subscribes to methods, twin responses, desired changes
// and (with an OnC2D handler) cloud-to-device messages, and starts
// renewing the token. It fails if the first connection fails (later drops
// are retried with exponential backoff); a client whose Connect failed is
// not used again.
func (c *Client) Connect(ctx context.Context) error {
	t := c.cli.Connect()
	if err := wait(ctx, t); err != nil {
		c.cli.Disconnect(0)
		return fmt.Errorf("iotdevice: connect %s: %w", c.cs.DeviceID, err)
	}
	c.wg.Add(1)
	go c.runEvents()
	if err := c.subscribe(ctx); err != nil {
		c.Close()
		return err
	}
	if !c.cs.X509 {
		c.wg.Add(1)
		go c.renew()
	}
	return nil
}

func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) subscribe(ctx context.Context) error {
	filters := map[string]byte{topic.FilterMethods: 0, topic.FilterTwinResponses: 0, topic.FilterDesired: 0}
	c.mu.Lock()
	if c.c2d != nil && c.cs.ModuleID == "" {
		filters[topic.FilterC2D(c.cs.DeviceID)] = 1
	}
	c.mu.Unlock()
	if err := wait(ctx, c.cli.SubscribeMultiple(filters, nil)); err != nil {
		return fmt.Errorf("iotdevice: subscribe: %w", err)
	}
	return nil
}

// onConnect re-subscribes after a reconnect, as the SDKs do.
func (c *Client) onConnect(paho.Client) {
	if c.connects.Add(1) == 1 {
		return
	}
	c.log.Info("reconnected")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.subscribe(ctx); err != nil {
			c.log.Warn("re-subscribe failed", "error", err)
		}
	}()
}

// renew reconnects with a new token at 85 % of the token lifetime
// (MQTT 3.1.1 cannot re-authenticate in band, device-protocol §3.4).
func (c *Client) renew() {
	defer c.wg.Done()
	every := c.opts.TokenLifetime * 85 / 100
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
			c.log.Info("renewing the SAS token")
			c.cli.Disconnect(250)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := wait(ctx, c.cli.Connect()); err != nil {
				c.log.Warn("reconnect with a new token failed", "error", err)
			}
			cancel()
		}
	}
}

// Close disconnects and stops the client's goroutines.
func (c *Client) Close() {
	c.mu.Lock()
	if c.isClosed {
		c.mu.Unlock()
		return
	}
	c.isClosed = true
	close(c.closed)
	c.mu.Unlock()
	c.wg.Wait() // method answers in flight are published first
	c.cli.Disconnect(250)
}

// IsConnected reports whether the client is connected now.
func (c *Client) IsConnected() bool { return c.cli.IsConnectionOpen() }

// OnMethod registers the handler of a direct method. Methods without a
// handler are answered with status 404.
func (c *Client) OnMethod(name string, fn MethodHandler) {
	c.mu.Lock()
	c.methods[name] = fn
	c.mu.Unlock()
}

// OnC2D registers the cloud-to-device message handler. Register it before
// Connect: the client subscribes to its messages only then, as the SDKs
// subscribe only once a handler exists.
func (c *Client) OnC2D(fn C2DHandler) {
	c.mu.Lock()
	c.c2d = fn
	c.mu.Unlock()
}

// OnDesired registers the desired-properties handler.
func (c *Client) OnDesired(fn DesiredHandler) {
	c.mu.Lock()
	c.desired = fn
	c.mu.Unlock()
}

// onMessage dispatches what the hub sends.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	t, err := topic.Parse(m.Topic())
	if err != nil {
		c.log.Warn("ignoring an unexpected message", "topic", m.Topic())
		return
	}
	switch t.Kind {
	case topic.MethodRequest:
		c.mu.Lock()
		if c.isClosed {
			c.mu.Unlock()
			return
		}
		c.wg.Add(1)
		c.mu.Unlock()
		go c.answer(t.Method, t.RequestID, m.Payload())
	case topic.TwinResponse:
		c.mu.Lock()
		ch := c.pending[t.RequestID]
		delete(c.pending, t.RequestID)
		c.mu.Unlock()
		if ch != nil {
			ch <- twinResult{status: t.Status, version: t.Version, body: m.Payload()}
		}
	case topic.C2D:
		c.queue(func() {
			c.mu.Lock()
			fn := c.c2d
			c.mu.Unlock()
			if fn != nil {
				fn(m.Payload(), t.Properties)
			}
			m.Ack() // the hub completes the message on this PUBACK
		})
	case topic.TwinDesired:
		patch, err := iothub.DecodeObject(m.Payload())
		if err != nil {
			c.log.Warn("desired patch is not a JSON object", "error", err)
			return
		}
		delete(patch, iothub.VersionKey)
		// Notifications may be handled out of order; like the SDKs, drop
		// one no newer than what was delivered (device-protocol §11.1).
		for {
			last := c.desiredV.Load()
			if t.Version <= last {
				return
			}
			if c.desiredV.CompareAndSwap(last, t.Version) {
				break
			}
		}
		c.queue(func() {
			c.mu.Lock()
			fn := c.desired
			c.mu.Unlock()
			if fn != nil {
				fn(patch, t.Version)
			}
		})
	}
}

// queue hands work to the event goroutine, which runs it in arrival order.
func (c *Client) queue(work func()) {
	select {
	case c.events <- work:
	case <-c.closed:
	}
}

// runEvents runs queued work until the client closes.
func (c *Client) runEvents() {
	defer c.wg.Done()
	for {
		select {
		case work := <-c.events:
			work()
		case <-c.closed:
			return
		}
	}
}

func (c *Client) answer(name, rid string, payload []byte) {
	defer c.wg.Done()
	c.mu.Lock()
	fn := c.methods[name]
	c.mu.Unlock()
	status, resp := 404, any(map[string]string{"message": "method " + name + " is not implemented by this device"})
	if fn != nil {
		status, resp = fn(context.Background(), payload)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		status, body = 500, []byte(`{"message":"the response could not be encoded"}`)
	}
	t := c.cli.Publish(topic.MethodResult(status, rid).String(), 0, false, body)
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		c.log.Warn("method response not sent", "method", name, "error", t.Error())
	}
}

// Twin returns the device's desired and reported properties
// (device-protocol §11.1).
func (c *Client) Twin(ctx context.Context) (iothub.TwinProperties, error) {
	var p iothub.TwinProperties
	r, err := c.twinRequest(ctx, topic.GetTwin, []byte(" "))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		return p, fmt.Errorf("iotdevice: twin: %w", err)
	}
	return p, nil
}

// UpdateReported sends a reported-properties patch and returns the new
// reported $version once the hub has stored it.
func (c *Client) UpdateReported(ctx context.Context, patch any) (int64, error) {
	body, err := json.Marshal(patch)
	if err != nil {
		return 0, err
	}
	r, err := c.twinRequest(ctx, topic.PatchReported, body)
	if err != nil {
		return 0, err
	}
	return r.version, nil
}

func (c *Client) twinRequest(ctx context.Context, build func(rid string) topic.Topic, body []byte) (twinResult, error) {
	rid := strconv.FormatUint(c.rid.Add(1), 10)
	ch := make(chan twinResult, 1)
	c.mu.Lock()
	c.pending[rid] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, rid)
		c.mu.Unlock()
	}()
	if err := wait(ctx, c.cli.Publish(build(rid).String(), 0, false, body)); err != nil {
		return twinResult{}, fmt.Errorf("iotdevice: twin request: %w", err)
	}
	select {
	case r := <-ch:
		if r.status >= 300 {
			var de iothub.DeviceError
			_ = json.Unmarshal(r.body, &de)
			code := iothub.ErrorCode(de.ErrorCode)
			if code == 0 {
				code = iothub.ErrorCode(r.status * 1000)
			}
			return r, &iothub.Error{Code: code, Message: de.Message}
		}
		return r, nil
	case <-ctx.Done():
		return twinResult{}, ctx.Err()
	case <-c.closed:
		return twinResult{}, ErrClosed
	}
}

// SendEvent sends telemetry at QoS 1 and waits for the hub's
// acknowledgement (device-protocol §8).
func (c *Client) SendEvent(ctx context.Context, body []byte, props topic.Properties) error {
	t := topic.Event(c.cs.DeviceID, c.cs.ModuleID, props)
	if err := wait(ctx, c.cli.Publish(t.String(), 1, false, body)); err != nil {
		return fmt.Errorf("iotdevice: send event: %w", err)
	}
	return nil
}
