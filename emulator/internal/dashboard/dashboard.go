// Package dashboard is the emulator's web dashboard: the pages an IoT
// developer would open Azure IoT Explorer or the portal for (devices and
// their twins, direct methods, cloud-to-device messages, live telemetry,
// queries, jobs, configurations, a live event feed), served on the admin
// listener.
//
// The pages are plain HTML, CSS and JavaScript embedded in the binary, so
// they work from go run with no build step and no Node toolchain. They
// call the hub's own service API, mounted under /api/ on the same
// listener, with a SAS token of the iothubowner policy from /session: the
// dashboard can do nothing a service app cannot. /session answers only
// requests addressed to a loopback name or one of the hub's host names,
// so a page of another origin that rebinds a DNS name to 127.0.0.1
// cannot read the token.
package dashboard

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Session is what a page needs to call the service API.
type Session struct {
	// HostName is the hub's host name, as connection strings carry it.
	HostName string `json:"hostName"`
	// Authorization is a SAS token of the iothubowner policy.
	Authorization string `json:"authorization"`
	// Expires is when the token expires; the page asks for another
	// before.
	Expires time.Time `json:"expires"`
}

// Config configures the dashboard.
type Config struct {
	// API is the service API (the REST face), served under /api/.
	API http.Handler
	// Session makes a session: a fresh token.
	Session func() (Session, error)
	// HostNames are the hub's host names, which /session answers besides
	// loopback names.
	HostNames []string
}

// Handler returns the dashboard: the pages at /, the service API under
// /api/ and the session at /session.
func Handler(cfg Config) http.Handler {
	sub, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", cfg.API))
	mux.HandleFunc("GET /session", func(w http.ResponseWriter, r *http.Request) {
		if !localHost(r.Host, cfg.HostNames) {
			http.Error(w, "the dashboard's session is served to loopback names and the hub's host names only", http.StatusForbidden)
			return
		}
		s, err := cfg.Session()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(s)
	})
	files := http.FileServerFS(sub)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard's pages are read with GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
	return mux
}

// localHost reports whether a request's Host names this machine: a
// loopback address, localhost, or one of the hub's names.
func localHost(hostport string, names []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	for _, n := range names {
		if strings.EqualFold(host, n) {
			return true
		}
	}
	return false
}
