package emulatortest_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/api/wsconn"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// closedByServer reads c until it ends and reports whether the server
// closed it (rather than the client's own deadline, a minute away),
// with what it sent first.
func closedByServer(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server kept the connection open (read %d bytes)", len(got))
	}
	return got
}

// Ensure that the MQTT listener spends little on a client that has not
// authenticated: one that connects and says nothing is closed at the
// connect time-out, TLS handshake included, over TLS and over WebSocket;
// a CONNECT announcing more
// than a telemetry message's size is refused after its fixed header,
// before its body; and a client that goes on connecting afterwards is
// served.
func TestMQTTBeforeAuthentication(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.ConnectTimeout = 300 * time.Millisecond }))
	cs := e.AddDevice(t, "patient")

	plain, err := net.Dial("tcp", e.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	closedByServer(t, plain) // no TLS handshake at all

	idle, err := tls.Dial("tcp", e.MQTTAddr(), e.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	closedByServer(t, idle) // TLS, then no CONNECT

	big, err := tls.Dial("tcp", e.MQTTAddr(), e.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	// CONNECT, remaining length 100 MB (varint 0x80 0xc2 0xd7 0x2f), then
	// a little of it: the server must not wait for the rest.
	if _, err := big.Write(append([]byte{0x10, 0x80, 0xc2, 0xd7, 0x2f}, make([]byte, 64)...)); err != nil {
		t.Fatal(err)
	}
	if got := closedByServer(t, big); len(got) != 0 {
		t.Fatalf("answered an oversized CONNECT with %x", got)
	}

	// MQTT over WebSocket: the upgrade, then no CONNECT.
	ws, err := wsconn.Dial(testCtx(t), "wss://"+e.HTTPSAddr()+topic.WebSocketPath, wsconn.MQTT, e.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	closedByServer(t, ws)

	c, err := rawClient(t, e, cs, raw{})
	if err != nil {
		t.Fatalf("a device after the refused ones: %v", err)
	}
	c.Disconnect(0)
}

// Ensure that an MQTT 3.1.1 client only ever gets 3.1.1 return codes: a
// persistent session without a client id is 2 (identifier rejected), a
// will at QoS 2 is 5, and a will with RETAIN is accepted, published as
// the device's telemetry with mqtt-retain = true when the connection is
// lost.
func TestMQTT311ReturnCodes(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	ctx := testCtx(t)
	cs := e.AddDevice(t, "willing")
	empty := ""
	if _, err := rawClient(t, e, cs, raw{clientID: &empty}); err == nil || !strings.Contains(err.Error(), "identifier rejected") {
		t.Fatalf("a persistent session without a client id: %v", err)
	}
	will := "devices/willing/messages/events/"
	if _, err := rawClient(t, e, cs, raw{will: &willOpt{topic: will, payload: "gone", qos: 2}}); err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Fatalf("a will at QoS 2: %v", err)
	}
	c, err := rawClient(t, e, cs, raw{will: &willOpt{topic: will + "cause=power", payload: "gone", qos: 1, retain: true}})
	if err != nil {
		t.Fatalf("a will with RETAIN: %v", err)
	}
	defer c.Disconnect(0)
	// The hub drops the connection: no DISCONNECT, so the will is published.
	if _, err := e.Service(t).AddFault(ctx, iothub.Fault{Kind: iothub.FaultDisconnect, DeviceID: "willing"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the will is the device's telemetry", func() error {
		msgs, err := e.Service(t).Messages(ctx, "willing")
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if string(m.Body) == "gone" && m.Properties["mqtt-retain"] == "true" && m.Properties["cause"] == "power" && m.Properties["iothub-MessageType"] == "Will" {
				return nil
			}
		}
		return errors.New("no will with mqtt-retain")
	})
}

// Ensure that an HTTPS client that announces a body and does not send it
// is answered and closed at the body time-out, and that the time-out
// ends with the body: a direct method that takes longer than it to
// answer is still answered.
func TestHTTPSBodyTimeout(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.BodyTimeout = 300 * time.Millisecond }))
	ctx := testCtx(t)
	cs := e.AddDevice(t, "slowpoke")
	slow, err := tls.Dial("tcp", e.HTTPSAddr(), e.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	req := "PUT /devices/slowpoke?api-version=" + iothub.APIVersion + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
	if _, err := slow.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	if got := closedByServer(t, slow); len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 4") {
		t.Fatalf("answered a body that never came with %.100q", got)
	}

	dev := e.Dial(t, cs, iotdevice.Options{})
	dev.OnMethod("ponder", func(ctx context.Context, _ json.RawMessage) (int, any) {
		select {
		case <-time.After(time.Second): // three body time-outs
		case <-ctx.Done():
		}
		return 200, "pondered"
	})
	res, err := e.Service(t).InvokeMethod(ctx, "slowpoke", iothub.MethodRequest{MethodName: "ponder", Payload: json.RawMessage(`{}`)})
	if err != nil || string(res.Payload) != `"pondered"` {
		t.Fatalf("a method answered after the body time-out: %+v, %v", res, err)
	}
}

// Ensure that connections that have not authenticated are capped: past
// the limit (two here) the MQTT and AMQP listeners close a new one at
// once, and once the idle ones go, devices connect again.
func TestPendingConnectionsCapped(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.MaxPending = 2 }))
	cs := e.AddDevice(t, "after-the-crowd")
	for _, addr := range []string{e.MQTTAddr(), e.AMQPPlainAddr()} {
		var idle []net.Conn
		refused := false
		// Each connection says nothing; the server counts it, and once two
		// are pending it closes the next at once.
		for i := 0; i < 10 && !refused; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
				idle = append(idle, c) // pending
				continue
			}
			c.Close()
			refused = true
		}
		if !refused || len(idle) > 2 {
			t.Fatalf("%s: %d idle connections held, refused %v; want at most 2 held, then a refusal", addr, len(idle), refused)
		}
		for _, c := range idle {
			c.Close()
		}
	}
	eventually(t, "a device connects once the idle connections went", func() error {
		c, err := rawClient(t, e, cs, raw{})
		if err != nil {
			return err
		}
		c.Disconnect(0)
		return nil
	})
}
