// Package iotdevice is a device (or module) client for Azure IoT Hub on
// each transport the official SDKs offer: MQTT 3.1.1 on TLS (port 8883)
// or WebSocket (443), AMQP 1.0 on TLS (5671) or WebSocket (443), and
// HTTPS (443). It connects with a device connection string, answers
// direct methods, reads and patches its twin, receives desired-property
// changes and cloud-to-device messages, sends telemetry and uploads
// files, as far as the transport allows: over HTTPS, as on Azure, there
// are no twins and no methods (next-wave-protocols §3.3).
//
// It works against real Azure IoT Hub with the system's root CAs, or
// against the emulator given its CA file: nothing else differs. Every
// topic comes from api/topic, every AMQP address and annotation from
// api/amqp, every HTTPS header from api/httpdevice, every token from
// api/sas. It is the only package that imports the Paho MQTT client.
package iotdevice

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/internal/cafile"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// Transport is how the client reaches the hub.
type Transport string

// The transports, named as the SDKs name them.
const (
	MQTT   Transport = "mqtt"   // MQTT 3.1.1 over TLS on 8883
	MQTTWS Transport = "mqttws" // MQTT over WebSocket on 443
	AMQP   Transport = "amqp"   // AMQP 1.0 over TLS on 5671
	AMQPWS Transport = "amqpws" // AMQP over WebSocket on 443
	HTTPS  Transport = "https"  // HTTPS on 443: telemetry, cloud-to-device polling and file upload
)

// Transports lists every transport.
var Transports = []Transport{MQTT, MQTTWS, AMQP, AMQPWS, HTTPS}

// ParseTransport reads a transport's name.
func ParseTransport(s string) (Transport, error) {
	for _, t := range Transports {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("iotdevice: unknown transport %q (want mqtt, mqttws, amqp, amqpws or https)", s)
}

// DefaultPort is the port the SDKs use for the transport.
func (t Transport) DefaultPort() string {
	switch t {
	case MQTT, "":
		return "8883"
	case AMQP:
		return "5671"
	}
	return "443"
}

// ErrNotSupported is returned for what the client's transport cannot do
// (twins and methods over HTTPS).
var ErrNotSupported = errors.New("iotdevice: not supported over this transport")

// ErrUnauthorized is in the chain of a Connect refused for the
// device's credentials: a wrong key or certificate, or a device that is
// disabled or deleted. Retrying does not help.
var ErrUnauthorized = errors.New("iotdevice: not authorized")

// refusedAuth reports whether a transport's connect error says the hub
// refused the credentials: MQTT CONNACK 4 or 5, or a 401 error code
// (HTTPS's, and AMQP's amqp:unauthorized-access as amqpErr maps it).
func refusedAuth(err error) bool {
	if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		return true
	}
	var he *iothub.Error
	return errors.As(err, &he) && he.Code.HTTPStatus() == 401
}

// Options configures a Client. The zero value connects like the official
// SDKs: MQTT over TLS on port 8883 with the system root CAs.
type Options struct {
	// CAFile is a PEM file of CAs to trust instead of the system roots
	// (the emulator's ca.pem).
	CAFile string
	// Certificate is the client certificate of an X.509 identity; the
	// connection string then says x509=true.
	Certificate *tls.Certificate
	// Transport is how to reach the hub. Zero means MQTT.
	Transport Transport
	// PollInterval is how often a client on HTTPS with an OnC2D handler
	// asks for cloud-to-device messages. Zero means 5 s.
	PollInterval time.Duration
	// HTTPSHost is host:port of the hub's HTTPS, where file uploads
	// begin. Zero means the host on 443.
	HTTPSHost string
	// TokenLifetime is how long each SAS token lives; the client reconnects
	// with a new one at 85 % of it. Zero means one hour.
	TokenLifetime time.Duration
	// KeepAlive is the MQTT keep-alive, and the AMQP idle timeout asked of
	// the hub. Zero means 180 s, like the Node SDK.
	KeepAlive time.Duration
	// CleanSession asks for a clean MQTT session. The SDKs use a
	// persistent one.
	CleanSession bool
	// ModelID is the IoT Plug and Play model (a DTMI) the device
	// implements, announced in CONNECT; the hub shows it as the twin's
	// modelId.
	ModelID string
	// OnConnectionChange, if set, is called when the client's connection
	// comes up (true) and when it is lost (false), reconnections
	// included; never over HTTPS, which has no connection.
	OnConnectionChange func(connected bool)
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
	tr   transport

	mu       sync.Mutex
	methods  map[string]MethodHandler // guarded by mu
	desired  DesiredHandler           // guarded by mu
	c2d      C2DHandler               // guarded by mu
	events   chan func()              // desired patches and C2D messages, in order
	desiredV atomic.Int64             // the newest desired $version delivered
	isClosed bool                     // guarded by mu
	closed   chan struct{}
	wg       sync.WaitGroup

	httpOnce sync.Once
	hc       *http.Client // of HTTPS and file uploads, once made
	hcErr    error
}

// transport is one way of reaching the hub. It delivers what the hub
// sends through the client's deliver methods.
type transport interface {
	// connect makes the first connection; later drops are the
	// transport's to recover from.
	connect(ctx context.Context) error
	// close disconnects; the client's goroutines have stopped.
	close()
	connected() bool
	sendEvent(ctx context.Context, body []byte, props topic.Properties) error
	// twin sends a twin request: a GET with a nil body, or a reported
	// patch.
	twin(ctx context.Context, patch []byte) (twinResult, error)
}

type twinResult struct {
	status  int
	version int64
	body    []byte
}

// twinRequests pairs twin requests with their answers by request id
// (MQTT's $rid, AMQP's correlation-id).
type twinRequests struct {
	mu      sync.Mutex
	pending map[string]chan twinResult // guarded by mu
}

// await registers a request; its answer comes on the channel until done
// is called.
func (r *twinRequests) await(id string) (answer <-chan twinResult, done func()) {
	ch := make(chan twinResult, 1)
	r.mu.Lock()
	if r.pending == nil {
		r.pending = map[string]chan twinResult{}
	}
	r.pending[id] = ch
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}
}

// answer hands res to the request id, if one still waits.
func (r *twinRequests) answer(id string, res twinResult) {
	r.mu.Lock()
	ch := r.pending[id]
	delete(r.pending, id)
	r.mu.Unlock()
	if ch != nil {
		ch <- res
	}
}

// err is the hub's error a twin answer carries, or nil.
func (r twinResult) err() error {
	if r.status < 300 {
		return nil
	}
	var de iothub.DeviceError
	_ = json.Unmarshal(r.body, &de)
	code := iothub.ErrorCode(de.ErrorCode)
	if code == 0 {
		code = iothub.ErrorCode(r.status * 1000)
	}
	return &iothub.Error{Code: code, Message: de.Message}
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
	if opts.Transport == "" {
		opts.Transport = MQTT
	}
	if _, err := ParseTransport(string(opts.Transport)); err != nil {
		return nil, err
	}
	if opts.Transport == HTTPS && cs.ModuleID != "" {
		return nil, fmt.Errorf("%w: modules cannot use HTTPS, only MQTT and AMQP", ErrNotSupported)
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 180 * time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{cs: cs, opts: opts, log: opts.Logger.With("device", clientID(cs), "transport", string(opts.Transport)),
		methods: map[string]MethodHandler{}, closed: make(chan struct{}), events: make(chan func(), 64)}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	switch opts.Transport {
	case MQTT, MQTTWS:
		c.tr = newMQTT(c, tlsCfg)
	case AMQP, AMQPWS:
		c.tr = newAMQP(c, tlsCfg)
	case HTTPS:
		c.tr, err = newHTTPS(c)
		if err != nil {
			return nil, err
		}
	}
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

// host is the gateway, or the hub.
func (c *Client) host() string {
	if c.cs.GatewayHostName != "" {
		return c.cs.GatewayHostName
	}
	return c.cs.HostName
}

// hostPort is where the transport connects: the host on the transport's
// port; a port in the host (an emulator convenience, which the Node SDK
// honours too) replaces the default.
func (c *Client) hostPort() (string, string) {
	h, port := c.host(), c.opts.Transport.DefaultPort()
	if hh, p, err := net.SplitHostPort(h); err == nil {
		h, port = hh, p
	}
	return h, port
}

func (c *Client) tlsConfig() (*tls.Config, error) {
	h, _ := c.hostPort()
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

// audience is the resource the identity's tokens are scoped to.
func (c *Client) audience() string {
	return sas.DeviceResource(c.cs.HostName, c.cs.DeviceID, c.cs.ModuleID)
}

// token is a fresh SAS token for the identity, "" for an X.509 one.
func (c *Client) token() string {
	if c.cs.X509 {
		return ""
	}
	tok, err := sas.New(c.audience(), c.cs.SharedAccessKeyName, c.cs.SharedAccessKey, time.Now().Add(c.opts.TokenLifetime))
	if err != nil {
		c.log.Error("cannot sign a SAS token", "error", err)
		return ""
	}
	return tok.String()
}

// Connect connects, subscribes to methods, twin responses, desired changes
// and (with an OnC2D handler) cloud-to-device messages, and starts
// renewing the token. It fails if the first connection fails (later drops
// are retried with exponential backoff); a client whose Connect failed is
// not used again.
func (c *Client) Connect(ctx context.Context) error {
	c.wg.Add(1)
	go c.runEvents()
	if err := c.tr.connect(ctx); err != nil {
		c.Close()
		if refusedAuth(err) {
			return fmt.Errorf("iotdevice: connect %s: %w: %w", clientID(c.cs), ErrUnauthorized, err)
		}
		return fmt.Errorf("iotdevice: connect %s: %w", clientID(c.cs), err)
	}
	return nil
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
	c.wg.Wait() // method answers in flight are sent first
	c.tr.close()
}

// IsConnected reports whether the client is connected now.
func (c *Client) IsConnected() bool { return c.tr.connected() }

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

// connectionChanged reports a change of the connection's state.
func (c *Client) connectionChanged(up bool) {
	if fn := c.opts.OnConnectionChange; fn != nil {
		fn(up)
	}
}

func (c *Client) wantsC2D() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c2d != nil && c.cs.ModuleID == ""
}

// deliverMethod answers a method request on a goroutine of its own; reply
// sends the answer.
func (c *Client) deliverMethod(name string, payload []byte, reply func(status int, body []byte) error) {
	c.mu.Lock()
	if c.isClosed {
		c.mu.Unlock()
		return
	}
	fn := c.methods[name]
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		status, resp := 404, any(map[string]string{"message": "method " + name + " is not implemented by this device"})
		if fn != nil {
			status, resp = fn(context.Background(), payload)
		}
		body, err := json.Marshal(resp)
		if err != nil {
			status, body = 500, []byte(`{"message":"the response could not be encoded"}`)
		}
		if err := reply(status, body); err != nil {
			c.log.Warn("method response not sent", "method", name, "error", err)
		}
	}()
}

// deliverC2D hands a cloud-to-device message to the handler, in order;
// settle completes it at the hub once the handler has returned.
func (c *Client) deliverC2D(body []byte, props topic.Properties, settle func()) {
	c.queue(func() {
		c.mu.Lock()
		fn := c.c2d
		c.mu.Unlock()
		if fn != nil {
			fn(body, props)
		}
		settle()
	})
}

// deliverDesired hands a desired-properties patch to the handler, in
// order. Notifications may be handled out of order; like the SDKs, it
// drops one no newer than what was delivered (device-protocol §11.1).
func (c *Client) deliverDesired(body []byte, version int64) {
	patch, err := iothub.DecodeObject(body)
	if err != nil {
		c.log.Warn("desired patch is not a JSON object", "error", err)
		return
	}
	if version == 0 {
		if v, ok := patch[iothub.VersionKey].(json.Number); ok {
			version, _ = v.Int64()
		} else if v, ok := patch[iothub.VersionKey].(float64); ok {
			version = int64(v)
		}
	}
	delete(patch, iothub.VersionKey)
	for {
		last := c.desiredV.Load()
		if version <= last {
			return
		}
		if c.desiredV.CompareAndSwap(last, version) {
			break
		}
	}
	c.queue(func() {
		c.mu.Lock()
		fn := c.desired
		c.mu.Unlock()
		if fn != nil {
			fn(patch, version)
		}
	})
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

// Twin returns the device's desired and reported properties
// (device-protocol §11.1).
func (c *Client) Twin(ctx context.Context) (iothub.TwinProperties, error) {
	var p iothub.TwinProperties
	r, err := c.tr.twin(ctx, nil)
	if err == nil {
		err = r.err()
	}
	if err != nil {
		return p, fmt.Errorf("iotdevice: twin: %w", err)
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		return p, fmt.Errorf("iotdevice: twin: %w", err)
	}
	return p, nil
}

// UpdateReported sends a reported-properties patch and returns the new
// reported $version once the hub has stored it (0 when the transport's
// answer does not say).
func (c *Client) UpdateReported(ctx context.Context, patch any) (int64, error) {
	body, err := json.Marshal(patch)
	if err != nil {
		return 0, err
	}
	r, err := c.tr.twin(ctx, body)
	if err == nil {
		err = r.err()
	}
	if err != nil {
		return 0, fmt.Errorf("iotdevice: reported patch: %w", err)
	}
	return r.version, nil
}

// SendEvent sends telemetry and waits for the hub's acknowledgement: a
// PUBACK (QoS 1), an accepted disposition or a 204.
func (c *Client) SendEvent(ctx context.Context, body []byte, props topic.Properties) error {
	if err := c.tr.sendEvent(ctx, body, props); err != nil {
		return fmt.Errorf("iotdevice: send event: %w", err)
	}
	return nil
}
