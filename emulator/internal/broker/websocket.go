package broker

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// WebSocketPath is where devices open MQTT over WebSocket.
const WebSocketPath = topic.WebSocketPath

// WebSocketHandler upgrades requests to MQTT over WebSocket. The
// subprotocol is matched case-insensitively ("mqtt" or "MQTT") and echoed as
// the client wrote it; query strings are ignored (device-protocol §1.1).
// A client asking for one of the subprotocols of others (the service
// clients' AMQP, say) gets its connection served by that function instead,
// as a byte stream, until it returns.
func (b *Broker) WebSocketHandler(others map[string]func(net.Conn)) http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var header http.Header
		var other func(net.Conn)
		for _, p := range websocket.Subprotocols(r) {
			if strings.EqualFold(p, "mqtt") {
				header = http.Header{"Sec-Websocket-Protocol": {p}}
				break
			}
			if fn := others[p]; fn != nil {
				header, other = http.Header{"Sec-Websocket-Protocol": {p}}, fn
				break
			}
		}
		ws, err := up.Upgrade(w, r, header)
		if err != nil {
			b.log.Info("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
			return
		}
		b.mu.Lock()
		closing := b.closing
		if !closing {
			b.wg.Add(1)
		}
		b.mu.Unlock()
		if closing {
			ws.Close()
			return
		}
		defer b.wg.Done()
		c := &wsConn{ws: ws}
		if r.TLS != nil {
			c.state = *r.TLS
		}
		if other != nil {
			other(c)
			return
		}
		b.serveConn("wss", c)
	})
}

// wsConn is a net.Conn over a WebSocket: binary frame payloads form one
// byte stream, so MQTT packets may span or share frames.
type wsConn struct {
	ws    *websocket.Conn
	r     io.Reader
	wm    sync.Mutex
	state tls.ConnectionState // of the HTTPS connection it was upgraded from
}

// ConnectionState gives the TLS state, client certificate included.
func (c *wsConn) ConnectionState() tls.ConnectionState { return c.state }

func (c *wsConn) Read(p []byte) (int, error) {
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

func (c *wsConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error                       { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}
