package iotdevice

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// mqttTransport is MQTT 3.1.1 through Paho, on TLS or WebSocket
// (device-protocol §1–§11).
type mqttTransport struct {
	c        *Client
	cli      paho.Client
	rid      atomic.Uint64
	connects atomic.Int64
	twins    twinRequests
}

func newMQTT(c *Client, tlsCfg *tls.Config) *mqttTransport {
	t := &mqttTransport{c: c}
	po := paho.NewClientOptions().
		SetStore(copyingStore{paho.NewMemoryStore()}).
		AddBroker(t.brokerURL()).
		SetClientID(clientID(c.cs)).
		SetCredentialsProvider(t.credentials).
		SetCleanSession(c.opts.CleanSession).
		SetProtocolVersion(4).
		SetTLSConfig(tlsCfg).
		SetKeepAlive(c.opts.KeepAlive).
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
		SetOnConnectHandler(t.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.log.Info("connection lost", "error", err)
			c.connectionChanged(false)
		}).
		SetDefaultPublishHandler(t.onMessage)
	t.cli = paho.NewClient(po)
	return t
}

// brokerURL is ssl://{host}:8883 or wss://{host}:443/$iothub/websocket.
func (t *mqttTransport) brokerURL() string {
	h, port := t.c.hostPort()
	if t.c.opts.Transport == MQTTWS {
		return "wss://" + net.JoinHostPort(h, port) + topic.WebSocketPath
	}
	return "ssl://" + net.JoinHostPort(h, port)
}

// credentials gives the username and a fresh SAS token at every connect
// (device-protocol §3, §4.1); an X.509 identity sends no password.
func (t *mqttTransport) credentials() (string, string) {
	cs := t.c.cs
	u := topic.Username{Host: cs.HostName, DeviceID: cs.DeviceID, ModuleID: cs.ModuleID, APIVersion: APIVersion, ModelID: t.c.opts.ModelID, DeviceClientType: "iothub-emulator-go/1"}
	return u.String(), t.c.token()
}

func (t *mqttTransport) connect(ctx context.Context) error {
	if err := wait(ctx, t.cli.Connect()); err != nil {
		t.cli.Disconnect(0)
		return err
	}
	if err := t.subscribe(ctx); err != nil {
		return err
	}
	if !t.c.cs.X509 {
		t.c.wg.Add(1)
		go t.renew()
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

func (t *mqttTransport) subscribe(ctx context.Context) error {
	filters := map[string]byte{topic.FilterMethods: 0, topic.FilterTwinResponses: 0, topic.FilterDesired: 0}
	if t.c.wantsC2D() {
		filters[topic.FilterC2D(t.c.cs.DeviceID)] = 1
	}
	if err := wait(ctx, t.cli.SubscribeMultiple(filters, nil)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

// onConnect re-subscribes after a reconnect, as the SDKs do.
func (t *mqttTransport) onConnect(paho.Client) {
	t.c.connectionChanged(true)
	if t.connects.Add(1) == 1 {
		return
	}
	t.c.log.Info("reconnected")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := t.subscribe(ctx); err != nil {
			t.c.log.Warn("re-subscribe failed", "error", err)
		}
	}()
}

// renew reconnects with a new token at 85 % of the token lifetime
// (MQTT 3.1.1 cannot re-authenticate in band, device-protocol §3.4).
func (t *mqttTransport) renew() {
	defer t.c.wg.Done()
	tick := time.NewTicker(t.c.opts.TokenLifetime * 85 / 100)
	defer tick.Stop()
	for {
		select {
		case <-t.c.closed:
			return
		case <-tick.C:
			t.c.log.Info("renewing the SAS token")
			t.cli.Disconnect(250)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := wait(ctx, t.cli.Connect()); err != nil {
				t.c.log.Warn("reconnect with a new token failed", "error", err)
			}
			cancel()
		}
	}
}

func (t *mqttTransport) close()          { t.cli.Disconnect(250) }
func (t *mqttTransport) connected() bool { return t.cli.IsConnectionOpen() }

// onMessage dispatches what the hub sends.
func (t *mqttTransport) onMessage(_ paho.Client, m paho.Message) {
	tp, err := topic.Parse(m.Topic())
	if err != nil {
		t.c.log.Warn("ignoring an unexpected message", "topic", m.Topic())
		return
	}
	switch tp.Kind {
	case topic.MethodRequest:
		rid := tp.RequestID
		t.c.deliverMethod(tp.Method, m.Payload(), func(status int, body []byte) error {
			tok := t.cli.Publish(topic.MethodResult(status, rid).String(), 0, false, body)
			if !tok.WaitTimeout(10 * time.Second) {
				return fmt.Errorf("no answer from the broker")
			}
			return tok.Error()
		})
	case topic.TwinResponse:
		t.twins.answer(tp.RequestID, twinResult{status: tp.Status, version: tp.Version, body: m.Payload()})
	case topic.C2D:
		t.c.deliverC2D(m.Payload(), tp.Properties, m.Ack) // the hub completes the message on this PUBACK
	case topic.TwinDesired:
		t.c.deliverDesired(m.Payload(), tp.Version)
	}
}

func (t *mqttTransport) twin(ctx context.Context, patch []byte) (twinResult, error) {
	build, body := topic.GetTwin, []byte(" ")
	if patch != nil {
		build, body = topic.PatchReported, patch
	}
	rid := strconv.FormatUint(t.rid.Add(1), 10)
	ch, done := t.twins.await(rid)
	defer done()
	if err := wait(ctx, t.cli.Publish(build(rid).String(), 0, false, body)); err != nil {
		return twinResult{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return twinResult{}, ctx.Err()
	case <-t.c.closed:
		return twinResult{}, ErrClosed
	}
}

// sendEvent publishes at QoS 1 and waits for the PUBACK (device-protocol §8).
func (t *mqttTransport) sendEvent(ctx context.Context, body []byte, props topic.Properties) error {
	tp := topic.Event(t.c.cs.DeviceID, t.c.cs.ModuleID, props)
	return wait(ctx, t.cli.Publish(tp.String(), 1, false, body))
}

// copyingStore is Paho's memory store, except that Get returns a copy of
// a stored PUBLISH. On a reconnect Paho sets the DUP flag of the packets
// it resends on what Get returned, while the previous connection's writer
// may still be writing the same packet: a data race in Paho
// (eclipse-paho/paho.mqtt.golang#703). On a copy, the flag is the
// resend's own.
type copyingStore struct{ paho.Store }

func (s copyingStore) Get(key string) packets.ControlPacket {
	p := s.Store.Get(key)
	if pub, ok := p.(*packets.PublishPacket); ok {
		cp := *pub
		return &cp
	}
	return p
}
