package iotdevice

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/internal/amqplink"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/api/wsconn"
)

// amqpTransport is AMQP 1.0 on TLS or WebSocket, with the links of
// next-wave-protocols §2: a token put on $cbs (none for X.509), a
// telemetry sender, the cloud-to-device receiver when there is a
// handler, and the method and twin channels, each a sender and receiver
// pair on one address. A dropped connection is redialled with backoff
// and its links attached again; the token is renewed in band on $cbs at
// 85 % of its lifetime.
type amqpTransport struct {
	c   *Client
	tls *tls.Config

	mu    sync.Mutex
	live  *amqpLinks    // guarded by mu; nil while disconnected
	ready chan struct{} // guarded by mu; closed once live is set
	twins twinRequests
}

// amqpLinks are one connection's senders.
type amqpLinks struct {
	conn                  *amqplink.Conn
	events, methods, twin *amqplink.Sender
	ctx                   context.Context // ends with the connection or the client
	cancel                context.CancelFunc
}

func newAMQP(c *Client, tlsCfg *tls.Config) *amqpTransport {
	return &amqpTransport{c: c, tls: tlsCfg, ready: make(chan struct{})}
}

func (t *amqpTransport) connect(ctx context.Context) error {
	l, err := t.dial(ctx)
	if err != nil {
		return err
	}
	t.setLive(l)
	t.c.connectionChanged(true)
	t.c.wg.Add(1)
	go t.supervise(l)
	return nil
}

func (t *amqpTransport) setLive(l *amqpLinks) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live = l
	if l != nil {
		close(t.ready)
	} else {
		t.ready = make(chan struct{})
	}
}

// links waits for a live connection.
func (t *amqpTransport) links(ctx context.Context) (*amqpLinks, error) {
	for {
		t.mu.Lock()
		l, ready := t.live, t.ready
		t.mu.Unlock()
		if l != nil {
			return l, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.c.closed:
			return nil, ErrClosed
		}
	}
}

func (t *amqpTransport) connected() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live != nil
}

func (t *amqpTransport) close() {
	t.mu.Lock()
	l := t.live
	t.live = nil
	t.mu.Unlock()
	if l != nil {
		l.cancel()
		l.conn.Close()
	}
}

// supervise renews the token of the live connection and replaces it when
// it drops, until the client closes.
func (t *amqpTransport) supervise(l *amqpLinks) {
	defer t.c.wg.Done()
	var renew <-chan time.Time
	if !t.c.cs.X509 {
		tick := time.NewTicker(t.c.opts.TokenLifetime * 85 / 100)
		defer tick.Stop()
		renew = tick.C
	}
	for {
		select {
		case <-t.c.closed:
			return
		case <-renew:
			ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
			err := l.conn.PutToken(ctx, t.c.audience(), t.c.token())
			cancel()
			if err == nil {
				t.c.log.Info("renewed the SAS token")
				continue
			}
			t.c.log.Warn("token renewal failed; reconnecting", "error", err)
			l.conn.Close()
		case <-l.conn.Done():
		}
		select {
		case <-l.conn.Done():
		case <-t.c.closed:
			return
		}
		t.c.log.Info("connection lost", "error", l.conn.Err())
		l.cancel()
		t.setLive(nil)
		t.c.connectionChanged(false)
		if l = t.redial(); l == nil {
			return
		}
		t.c.log.Info("reconnected")
		t.setLive(l)
		t.c.connectionChanged(true)
	}
}

// redial dials until it connects, with exponential backoff and jitter up
// to 30 s; nil once the client closes.
func (t *amqpTransport) redial() *amqpLinks {
	backoff := time.Second
	for {
		wait := backoff/2 + mrand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-t.c.closed:
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l, err := t.dial(ctx)
		cancel()
		if err == nil {
			return l
		}
		t.c.log.Info("reconnect failed", "error", err, "retry_in", backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
}

// dial connects, authenticates and attaches the links.
func (t *amqpTransport) dial(ctx context.Context) (l *amqpLinks, err error) {
	h, port := t.c.hostPort()
	hubHost := t.c.cs.HostName
	if hh, _, err := net.SplitHostPort(hubHost); err == nil {
		hubHost = hh
	}
	cfg := amqplink.Config{Addr: net.JoinHostPort(h, port), HostName: hubHost, TLS: t.tls, IdleTimeout: t.c.opts.KeepAlive}
	if t.c.opts.Transport == AMQPWS {
		ws, err := wsconn.Dial(ctx, "wss://"+net.JoinHostPort(h, port)+topic.WebSocketPath, wsconn.AMQP, t.tls)
		if err != nil {
			return nil, err
		}
		cfg.Conn = ws
	}
	conn, err := amqplink.Dial(ctx, cfg)
	if err != nil {
		if cfg.Conn != nil {
			cfg.Conn.Close()
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			conn.Close()
			err = amqpErr(err)
		}
	}()
	if !t.c.cs.X509 {
		if err := conn.PutToken(ctx, t.c.audience(), t.c.token()); err != nil {
			return nil, err
		}
	}
	lctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-conn.Done():
		case <-t.c.closed:
		}
		cancel()
	}()
	l = &amqpLinks{conn: conn, ctx: lctx, cancel: cancel}
	path := wire.DevicePath(t.c.cs.DeviceID, t.c.cs.ModuleID)
	props := func(channel string) map[string]any {
		p := map[string]any{wire.ClientVersionProperty: clientVersion, wire.APIVersionProperty: APIVersion}
		if channel != "" {
			p[wire.ChannelCorrelationProperty] = channel
		}
		return p
	}
	if l.events, err = conn.NewSender(ctx, path+wire.EventsSuffix, amqplink.LinkOptions{Properties: props("")}); err != nil {
		return nil, err
	}
	methods := "methods:" + newUUID().String()
	mr, err := conn.NewReceiver(ctx, path+wire.MethodsSuffix, amqplink.LinkOptions{Properties: props(methods), Credit: 16})
	if err != nil {
		return nil, err
	}
	if l.methods, err = conn.NewSender(ctx, path+wire.MethodsSuffix, amqplink.LinkOptions{Properties: props(methods)}); err != nil {
		return nil, err
	}
	twin := "twin:" + newUUID().String()
	tr, err := conn.NewReceiver(ctx, path+wire.TwinSuffix, amqplink.LinkOptions{Properties: props(twin), Credit: 16})
	if err != nil {
		return nil, err
	}
	if l.twin, err = conn.NewSender(ctx, path+wire.TwinSuffix, amqplink.LinkOptions{Properties: props(twin), Settled: true}); err != nil {
		return nil, err
	}
	go t.receiveMethods(l, mr)
	go t.receiveTwin(l, tr)
	if t.c.wantsC2D() {
		cr, err := conn.NewReceiver(ctx, path+wire.DeviceBoundSuffix, amqplink.LinkOptions{Properties: props("")})
		if err != nil {
			return nil, err
		}
		go t.receiveC2D(l, cr)
	}
	// Desired-property pushes begin with this PUT, as in both SDKs.
	r, err := t.twinRequest(ctx, l, map[any]any{wire.Symbol(wire.TwinOperation): "PUT", wire.Symbol(wire.TwinResource): wire.TwinDesiredResource}, []byte(" "))
	if err == nil {
		err = r.err()
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe to desired properties: %w", err)
	}
	return l, nil
}

// clientVersion is the com.microsoft:client-version of every link.
const clientVersion = "iothub-emulator-go/1"

func newUUID() wire.UUID {
	var u wire.UUID
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// amqpErr turns a refusal by the hub into its iothub.Error.
func amqpErr(err error) error {
	re := amqplink.RemoteError(err)
	if re == nil {
		errors.As(err, &re) // a put-token refusal is already one
	}
	if re != nil {
		return &iothub.Error{Code: wire.ErrorCode(re.Condition), Message: re.Description}
	}
	return err
}

func (t *amqpTransport) receiveMethods(l *amqpLinks, r *amqplink.Receiver) {
	for {
		d, err := r.Receive(l.ctx)
		if err != nil {
			return
		}
		_ = d.Accept(l.ctx)
		var corr any
		if d.Properties != nil {
			corr = d.Properties.CorrelationID
		}
		t.c.deliverMethod(d.AppProperty(wire.MethodNameProperty), d.Body(), func(status int, body []byte) error {
			m := &wire.Message{Properties: &wire.Properties{CorrelationID: corr},
				ApplicationProperties: map[any]any{wire.MethodStatusProperty: int32(status)}, Data: [][]byte{body}}
			// Not l.ctx: Close sends the answers in flight first.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return amqpErr(l.methods.Send(ctx, m))
		})
	}
}

// receiveTwin hands answers to their requests and desired-property
// pushes, which carry no correlation-id, to the client.
func (t *amqpTransport) receiveTwin(l *amqpLinks, r *amqplink.Receiver) {
	ctx := l.ctx
	for {
		d, err := r.Receive(ctx)
		if err != nil {
			return
		}
		_ = d.Accept(ctx)
		var corr string
		if d.Properties != nil {
			corr = wire.IDString(d.Properties.CorrelationID)
		}
		if corr == "" {
			t.c.deliverDesired(d.Body(), 0)
			continue
		}
		status, ok := wire.AsInt(d.MessageAnnotations[wire.Symbol(wire.TwinStatus)])
		if !ok {
			status = 200
		}
		version, _ := wire.AsInt(d.MessageAnnotations[wire.Symbol(wire.TwinVersion)])
		t.twins.answer(corr, twinResult{status: int(status), version: version, body: d.Body()})
	}
}

func (t *amqpTransport) receiveC2D(l *amqpLinks, r *amqplink.Receiver) {
	for {
		d, err := r.Receive(l.ctx)
		if err != nil {
			return
		}
		t.c.deliverC2D(d.Body(), wire.C2DProperties(d.Message), func() {
			if err := d.Accept(l.ctx); err != nil {
				t.c.log.Warn("cloud-to-device message not completed", "error", err)
			}
		})
	}
}

func (t *amqpTransport) twin(ctx context.Context, patch []byte) (twinResult, error) {
	l, err := t.links(ctx)
	if err != nil {
		return twinResult{}, err
	}
	ann, body := map[any]any{wire.Symbol(wire.TwinOperation): "GET"}, []byte(" ")
	if patch != nil {
		ann = map[any]any{wire.Symbol(wire.TwinOperation): "PATCH", wire.Symbol(wire.TwinResource): wire.TwinReportedResource}
		body = patch
	}
	return t.twinRequest(ctx, l, ann, body)
}

// twinRequest sends a request on the twin channel and waits for the
// answer with its correlation-id.
func (t *amqpTransport) twinRequest(ctx context.Context, l *amqpLinks, ann map[any]any, body []byte) (twinResult, error) {
	id := newUUID().String()
	ch, done := t.twins.await(id)
	defer done()
	m := &wire.Message{MessageAnnotations: ann, Properties: &wire.Properties{CorrelationID: id}, Data: [][]byte{body}}
	if err := l.twin.Send(ctx, m); err != nil {
		return twinResult{}, amqpErr(err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return twinResult{}, ctx.Err()
	case <-l.ctx.Done():
		return twinResult{}, errors.New("the connection was lost")
	}
}

// sendEvent sends unsettled and waits for the hub's accepted outcome.
func (t *amqpTransport) sendEvent(ctx context.Context, body []byte, props topic.Properties) error {
	l, err := t.links(ctx)
	if err != nil {
		return err
	}
	to := wire.DevicePath(t.c.cs.DeviceID, t.c.cs.ModuleID) + wire.EventsSuffix
	return amqpErr(l.events.Send(ctx, wire.Event(to, props, body)))
}
