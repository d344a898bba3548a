// Package wsgate is the emulator's one WebSocket front door on the HTTPS
// port. It upgrades a request by its path and WebSocket sub-protocol and
// hands the byte stream, as a net.Conn, to the face that speaks it: MQTT
// ("mqtt") to the broker, AMQP ("AMQPWSB10") to the AMQP engine, on
// /$iothub/websocket for IoT Hub clients and /$servicebus/websocket for
// Event Hubs clients (next-wave-protocols §1.2). It is the only package
// that imports gorilla/websocket, and it knows neither protocol.
package wsgate

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// A Route serves one sub-protocol on one path.
type Route struct {
	Path        string // matched exactly; the query string is ignored
	Subprotocol string // matched case-insensitively and echoed as the client wrote it
	// Serve serves the connection and returns when it ends.
	Serve func(net.Conn)
}

// Gate is an http.Handler for the WebSocket routes.
type Gate struct {
	log    *slog.Logger
	routes []Route
	up     websocket.Upgrader

	mu      sync.Mutex
	conns   map[*conn]bool // guarded by mu
	closing bool           // guarded by mu
	wg      sync.WaitGroup
}

// New returns a gate for routes. On a path, a client that names no
// sub-protocol the path serves gets the path's first route: MQTT clients
// that send none still work (device-protocol §1.1).
func New(log *slog.Logger, routes ...Route) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{log: log, routes: routes, conns: map[*conn]bool{},
		up: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}}
}

// Handles reports whether path is one of the gate's.
func (g *Gate) Handles(path string) bool {
	for _, r := range g.routes {
		if r.Path == path {
			return true
		}
	}
	return false
}

// choose picks the route for a request and the sub-protocol to echo.
func (g *Gate) choose(r *http.Request) (Route, string, bool) {
	var first *Route
	for i, rt := range g.routes {
		if rt.Path != r.URL.Path {
			continue
		}
		if first == nil {
			first = &g.routes[i]
		}
		for _, p := range websocket.Subprotocols(r) {
			if strings.EqualFold(p, rt.Subprotocol) {
				return rt, p, true
			}
		}
	}
	if first == nil {
		return Route{}, "", false
	}
	return *first, "", true
}

// ServeHTTP upgrades the request and serves the connection until it ends.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, proto, ok := g.choose(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var header http.Header
	if proto != "" {
		header = http.Header{"Sec-Websocket-Protocol": {proto}}
	}
	ws, err := g.up.Upgrade(w, r, header)
	if err != nil {
		g.log.Info("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	c := &conn{ws: ws}
	if r.TLS != nil {
		c.state = *r.TLS
	}
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		ws.Close()
		return
	}
	g.conns[c] = true
	g.wg.Add(1)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
		g.wg.Done()
	}()
	rt.Serve(c)
}

// Close closes every upgraded connection and waits for their Serve calls
// to return.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closing = true
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// conn is a net.Conn over a WebSocket: binary frame payloads form one
// byte stream, so packets may span or share frames.
type conn struct {
	ws    *websocket.Conn
	r     io.Reader
	wm    sync.Mutex
	state tls.ConnectionState // of the HTTPS connection it was upgraded from
}

// ConnectionState gives the TLS state, client certificate included.
func (c *conn) ConnectionState() tls.ConnectionState { return c.state }

func (c *conn) Read(p []byte) (int, error) {
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

func (c *conn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *conn) Close() error                      { return c.ws.Close() }
func (c *conn) LocalAddr() net.Addr               { return c.ws.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr              { return c.ws.RemoteAddr() }
func (c *conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of the next writes; gorilla keeps it
// in a plain field that writes read, so it is set under the write lock.
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.wm.Lock()
	defer c.wm.Unlock()
	return c.ws.SetWriteDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
