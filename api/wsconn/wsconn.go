// Package wsconn carries a byte stream over a WebSocket as a net.Conn, for
// the protocols IoT Hub serves on port 443: MQTT (sub-protocol "mqtt") and
// AMQP ("AMQPWSB10") on /$iothub/websocket, and AMQP on
// /$servicebus/websocket for Event Hubs clients (device-protocol §1.1,
// next-wave-protocols §1.2). Binary frames form one stream, so a packet
// may span frames or share one; text frames are skipped. Dial is the
// client side, Upgrade the server side. It knows neither protocol, and it
// is the only package that imports gorilla/websocket.
package wsconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Sub-protocols of IoT Hub's WebSocket endpoints.
const (
	MQTT = "mqtt"
	AMQP = "AMQPWSB10"
)

// Conn is a net.Conn over a WebSocket.
type Conn struct {
	ws    *websocket.Conn
	r     io.Reader
	wm    sync.Mutex
	state tls.ConnectionState
}

// Dial opens a WebSocket to url (wss://host:port/path) asking for
// subprotocol, over TLS configured by cfg.
func Dial(ctx context.Context, url, subprotocol string, cfg *tls.Config) (*Conn, error) {
	d := websocket.Dialer{TLSClientConfig: cfg, Subprotocols: []string{subprotocol}, HandshakeTimeout: 30 * time.Second}
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("wsconn: %s: %s: %w", url, resp.Status, err)
		}
		return nil, fmt.Errorf("wsconn: %s: %w", url, err)
	}
	c := &Conn{ws: ws}
	if tc, ok := ws.NetConn().(*tls.Conn); ok {
		c.state = tc.ConnectionState()
	}
	return c, nil
}

// Subprotocols lists the sub-protocols a request asks for.
func Subprotocols(r *http.Request) []string { return websocket.Subprotocols(r) }

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// Upgrade answers a WebSocket request, echoing subprotocol unless it is
// empty. The connection keeps the TLS state of the request, client
// certificate included.
func Upgrade(w http.ResponseWriter, r *http.Request, subprotocol string) (*Conn, error) {
	var header http.Header
	if subprotocol != "" {
		header = http.Header{"Sec-Websocket-Protocol": {subprotocol}}
	}
	ws, err := upgrader.Upgrade(w, r, header)
	if err != nil {
		return nil, err
	}
	c := &Conn{ws: ws}
	if r.TLS != nil {
		c.state = *r.TLS
	}
	return c, nil
}

// ConnectionState gives the TLS state, client certificate included.
func (c *Conn) ConnectionState() tls.ConnectionState { return c.state }

func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				continue
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *Conn) Close() error                      { return c.ws.Close() }
func (c *Conn) LocalAddr() net.Addr               { return c.ws.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr              { return c.ws.RemoteAddr() }
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of the next writes; gorilla keeps it
// in a plain field that writes read, so it is set under the write lock.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wm.Lock()
	defer c.wm.Unlock()
	return c.ws.SetWriteDeadline(t)
}

func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
