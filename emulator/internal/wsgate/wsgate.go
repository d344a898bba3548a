// Package wsgate is the emulator's one WebSocket front door on the HTTPS
// port. It upgrades a request by its path and WebSocket sub-protocol and
// hands the byte stream, as a net.Conn, to the face that speaks it: MQTT
// ("mqtt") to the broker, AMQP ("AMQPWSB10") to the AMQP engine, on
// /$iothub/websocket for IoT Hub clients and /$servicebus/websocket for
// Event Hubs clients (next-wave-protocols §1.2). The WebSocket itself is
// api/wsconn's, shared with the clients; the gate knows neither protocol.
package wsgate

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/iothub-emulator/iothub-emulator/api/wsconn"
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

	mu      sync.Mutex
	conns   map[*wsconn.Conn]bool // guarded by mu
	closing bool                  // guarded by mu
	wg      sync.WaitGroup
}

// New returns a gate for routes. On a path, a client that names no
// sub-protocol the path serves gets the path's first route: MQTT clients
// that send none still work (device-protocol §1.1).
func New(log *slog.Logger, routes ...Route) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{log: log, routes: routes, conns: map[*wsconn.Conn]bool{}}
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
		for _, p := range wsconn.Subprotocols(r) {
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
	c, err := wsconn.Upgrade(w, r, proto)
	if err != nil {
		g.log.Info("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		c.Close()
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
