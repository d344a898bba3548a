// Package server composes the emulator: the hub on its bbolt store, the
// MQTT broker on a TLS listener, the HTTPS listener serving the REST API
// and MQTT over WebSocket, and a plain-HTTP admin listener with /health
// and the CA certificate. Open binds every listener before it returns, so
// ":0" addresses work and bind errors reach the caller.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/blobstore"
	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/eventhubs"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/amqp"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/broker"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/dashboard"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/rest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/wsgate"
)

// StoreFile is the bbolt file in the data directory.
const StoreFile = "iothub.db"

// Config configures the emulator. Zero values are defaults.
type Config struct {
	// DataDir holds the store and the CA. Required.
	DataDir string
	// HostNames are the hub's host names; the first is the one printed in
	// connection strings. Zero means ["localhost"].
	HostNames []string
	// ExtraSANs are more names for the server certificate, besides the
	// host names, localhost, 127.0.0.1 and ::1.
	ExtraSANs []string
	// TLSCertFile and TLSKeyFile are a certificate of the user's (PEM,
	// the leaf first, then its chain) and its key, served instead of the
	// emulator's own: one from mkcert, say, whose CA the machine already
	// trusts. No CA is made then, and /ca.pem serves the chain's last
	// certificate.
	TLSCertFile, TLSKeyFile string
	// MQTTAddr is the MQTT/TLS address. Zero means "127.0.0.1:8883":
	// with the well-known keys, every listener serves this machine only
	// unless asked.
	MQTTAddr string
	// HTTPSAddr is the HTTPS address (REST and MQTT over WebSocket). Zero
	// means "127.0.0.1:443".
	HTTPSAddr string
	// AdminAddr is the plain-HTTP admin address: /health, /ca.pem and
	// the dashboard. Zero means "127.0.0.1:8080".
	AdminAddr string
	// NoDashboard turns the dashboard off.
	NoDashboard bool
	// AMQPAddr is the AMQP/TLS address of service clients (their
	// cloud-to-device messages). Zero means "127.0.0.1:5671"; "off" serves none.
	AMQPAddr string
	// AMQPPlainAddr is the plain-AMQP address, with no TLS, of Event Hubs
	// clients given UseDevelopmentEmulator=true. Zero means "127.0.0.1:5672";
	// "off" serves none. It is bound only when AMQP is served.
	AMQPPlainAddr string
	// KeySeed and KeySeed2 derive the policies' primary and secondary keys.
	// Zero means the well-known development seeds; with only KeySeed set,
	// KeySeed2 is derived from it.
	KeySeed, KeySeed2 string
	// SeedFile, if set, is a JSON file of devices to create at start-up.
	SeedFile string
	// NoSync skips fsync (tests and benchmarks only).
	NoSync bool
	// Lenient answers invalid MQTT subscriptions with 0x80 instead of
	// closing the connection.
	Lenient bool
	// MaxConcurrentJobs limits active jobs. Zero means 10.
	MaxConcurrentJobs int
	// TokenSkew is the clock skew allowed on SAS tokens. Zero means 5 min.
	TokenSkew time.Duration
	// ConfigurationInterval is how often configurations are applied besides
	// right after a change. Zero means 10 s.
	ConfigurationInterval time.Duration
	// X509CAFiles are PEM files of CA certificates that sign the
	// certificates of certificateAuthority devices: on Azure, the CA
	// certificates uploaded to the hub and verified.
	X509CAFiles []string
	// EventHubName is the built-in endpoint's Event Hub-compatible name.
	// Zero means the first label of the first host name.
	EventHubName string
	// ConsumerGroups are the built-in endpoint's consumer groups besides
	// $Default.
	ConsumerGroups []string
	// Partitions is the built-in endpoint's partition count. Zero means 4.
	Partitions int
	// Retention is how long telemetry is kept. Zero means a day.
	Retention time.Duration
	// RetainEvents bounds the events kept per partition. Zero means 100,000.
	RetainEvents int64
	// RetainBytes bounds the bytes of telemetry kept, all partitions
	// together. Zero means 1 GiB.
	RetainBytes int64
	// StorageConnectionString names the storage account file uploads go
	// to, as a hub's file upload settings do; empty answers uploads with
	// an error. UseDevelopmentStorage=true is Azurite over HTTPS.
	StorageConnectionString string
	// StorageContainer is the container of uploads. Zero means
	// "fileuploads".
	StorageContainer string
	// FileUploadSASTTL is how long an upload's SAS is valid. Zero means
	// an hour.
	FileUploadSASTTL time.Duration
	// NoFileNotifications turns off the file upload notifications.
	NoFileNotifications bool
	// Tier is the tier to emulate, its throttles and daily quota; zero
	// throttles nothing (PUT /emulator/tier changes it at run time).
	Tier iothub.TierSettings
	// Latency is the latency profile: "none", "azure-like" or a fixed
	// duration.
	Latency string
	// WriteTimeout bounds each write to a device or an AMQP client; one
	// whose socket stays full that long is disconnected. Zero means 10 s.
	WriteTimeout time.Duration
	// ConnectTimeout bounds the time an MQTT client has to send its
	// CONNECT, TLS handshake included. Zero means 10 s.
	ConnectTimeout time.Duration
	// MaxPending bounds the MQTT connections not yet authenticated, and
	// the AMQP connections in their handshake, each; more are closed at
	// once. Zero means 4096.
	MaxPending int
	// BodyTimeout bounds the time an HTTPS client has to send a
	// request's body. Zero means 30 s.
	BodyTimeout time.Duration
	// Logger receives structured logs. Zero means slog.Default().
	Logger *slog.Logger
	// Now is the hub's clock (timestamps, token expiry, throttles).
	// Zero means time.Now.
	Now func() time.Time
}

// Server is a running emulator.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  *bolt.Store
	hub    *hub.Hub
	broker *broker.Broker
	amqp   *amqp.Server
	ws     *wsgate.Gate
	caPEM  []byte

	mqttLn, httpsLn, adminLn, amqpLn, plainLn net.Listener
	https, admin                              *http.Server
	wg                                        sync.WaitGroup
	closeOnce                                 sync.Once
	closeErr                                  error
}

// Open starts the emulator.
func Open(cfg Config) (s *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: DataDir is required")
	}
	setDefaults(&cfg)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	srv := &Server{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			srv.Close() // release whatever was opened before the failure
		}
	}()
	s = srv
	cert, err := s.certificate()
	if err != nil {
		return nil, err
	}
	// Client certificates are requested, not required or verified here:
	// the hub checks them against the identity that connects.
	// X25519, then P-256: Go's default puts the hybrid post-quantum
	// exchange first, which a local emulator gains nothing from and which
	// costs every device's connect its share of CPU.
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}

	if s.store, err = bolt.Open(filepath.Join(cfg.DataDir, StoreFile), bolt.Options{NoSync: cfg.NoSync}); err != nil {
		return nil, err
	}
	roots, err := loadCAFiles(cfg.X509CAFiles)
	if err != nil {
		return nil, err
	}
	var files hub.FileStore
	if cfg.StorageConnectionString != "" {
		cs, err := connstr.ParseStorage(cfg.StorageConnectionString)
		if err != nil {
			return nil, fmt.Errorf("storage connection string: %w", err)
		}
		st, err := blobstore.New(cs, cfg.StorageContainer, s.caPEM, nil)
		if err != nil {
			return nil, err
		}
		files = st
	}
	s.hub, err = hub.New(s.store, s.store, hub.Options{
		X509Roots:             roots,
		Now:                   cfg.Now,
		ConfigurationInterval: cfg.ConfigurationInterval,
		HostNames:             cfg.HostNames,
		Policies:              hub.DefaultPolicies(cfg.KeySeed, cfg.KeySeed2),
		TokenSkew:             cfg.TokenSkew,
		MaxConcurrentJobs:     cfg.MaxConcurrentJobs,
		Events:                s.store,
		Partitions:            cfg.Partitions,
		Retention:             cfg.Retention,
		RetainEvents:          cfg.RetainEvents,
		RetainBytes:           cfg.RetainBytes,
		Files:                 files,
		FileUploadSASTTL:      cfg.FileUploadSASTTL,
		NoFileNotifications:   cfg.NoFileNotifications,
		Logger:                cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if err := s.hub.Start(); err != nil {
		return nil, err
	}
	if cfg.SeedFile != "" {
		groups, err := seed(s.hub, cfg.SeedFile)
		if err != nil {
			return nil, err
		}
		s.cfg.ConsumerGroups = append(append([]string(nil), s.cfg.ConsumerGroups...), groups...)
	}
	if cfg.Tier.Tier != "" {
		if err := s.hub.SetTier(cfg.Tier); err != nil {
			return nil, err
		}
	}
	latency, err := hub.ParseLatency(cfg.Latency)
	if err != nil {
		return nil, err
	}
	s.hub.SetLatency(latency)
	if s.broker, err = broker.New(s.hub, broker.Config{Logger: cfg.Logger, Lenient: cfg.Lenient, WriteTimeout: cfg.WriteTimeout, ConnectTimeout: cfg.ConnectTimeout, MaxPending: cfg.MaxPending}); err != nil {
		return nil, err
	}
	if err := s.broker.Start(); err != nil {
		return nil, err
	}
	if err := s.listen(tlsCfg); err != nil {
		return nil, err
	}
	return s, nil
}

func setDefaults(cfg *Config) {
	if len(cfg.HostNames) == 0 {
		cfg.HostNames = []string{"localhost"}
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&cfg.MQTTAddr, "127.0.0.1:8883")
	def(&cfg.HTTPSAddr, "127.0.0.1:443")
	def(&cfg.AdminAddr, "127.0.0.1:8080")
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	def(&cfg.AMQPAddr, "127.0.0.1:5671")
	def(&cfg.AMQPPlainAddr, "127.0.0.1:5672")
	def(&cfg.StorageContainer, "fileuploads")
	hubName, _, _ := strings.Cut(cfg.HostNames[0], ".")
	def(&cfg.EventHubName, hubName)
	if cfg.KeySeed != "" && cfg.KeySeed2 == "" {
		// A private primary seed must not leave well-known secondary keys.
		cfg.KeySeed2 = cfg.KeySeed + ":secondary"
	}
	def(&cfg.KeySeed, hub.DevKey)
	def(&cfg.KeySeed2, hub.DevKey2)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

func sans(cfg Config) []string {
	names := append([]string{}, cfg.HostNames...)
	names = append(names, "localhost", "127.0.0.1", "::1")
	names = append(names, cfg.ExtraSANs...)
	seen := map[string]bool{}
	out := names[:0]
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// listen binds the three listeners and starts serving.
func (s *Server) listen(tlsCfg *tls.Config) error {
	var err error
	if s.mqttLn, err = listen("mqtt", s.cfg.MQTTAddr, "-mqtt-addr"); err != nil {
		return err
	}
	if s.httpsLn, err = listen("https", s.cfg.HTTPSAddr, "-https-addr"); err != nil {
		return err
	}
	if s.adminLn, err = listen("admin", s.cfg.AdminAddr, "-admin-addr"); err != nil {
		return err
	}
	if s.cfg.AMQPAddr != "off" {
		if s.amqpLn, err = listen("amqp", s.cfg.AMQPAddr, "-amqp-addr"); err != nil {
			return err
		}
		if s.cfg.AMQPPlainAddr != "off" {
			if s.plainLn, err = listen("plain amqp", s.cfg.AMQPPlainAddr, "-amqp-plain-addr"); err != nil {
				return err
			}
		}
		s.amqp = amqp.New(amqp.Config{Logger: s.log, Authorize: amqp.DeviceAuthorizer(s.hub, amqp.EventHubsAuthorizer(s.hub)), WriteTimeout: s.cfg.WriteTimeout, MaxPending: s.cfg.MaxPending})
		amqp.ServeService(s.amqp, s.hub)
		amqp.ServeDevices(s.amqp, s.hub)
		amqp.ServeEventHubs(s.amqp, s.hub, amqp.EventHubsConfig{Name: s.cfg.EventHubName, ConsumerGroups: s.cfg.ConsumerGroups,
			Host: s.HostName(), Port: s.amqpLn.Addr().(*net.TCPAddr).Port})
		s.amqp.Serve(tls.NewListener(s.amqpLn, tlsCfg))
		if s.plainLn != nil {
			s.amqp.Serve(s.plainLn)
		}
	}
	s.broker.Serve(tls.NewListener(s.mqttLn, tlsCfg))

	api := rest.New(s.hub, rest.Config{Logger: s.log})
	routes := []wsgate.Route{{Path: topic.WebSocketPath, Subprotocol: "mqtt", Serve: s.broker.ServeConn}}
	if s.amqp != nil {
		// The service clients' AMQP over WebSocket shares the path.
		routes = append(routes, wsgate.Route{Path: topic.WebSocketPath, Subprotocol: "AMQPWSB10", Serve: s.amqp.ServeConn},
			// Event Hubs clients open AMQP over WebSocket on their own path.
			wsgate.Route{Path: eventhubs.ServiceBusWSPath, Subprotocol: "AMQPWSB10", Serve: s.amqp.ServeConn})
	}
	s.ws = wsgate.New(s.log, routes...)
	s.https = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.ws.Handles(r.URL.Path) {
				s.ws.ServeHTTP(w, r)
				return
			}
			bodyDeadline(w, r, s.cfg.BodyTimeout)
			api.ServeHTTP(w, r)
		}),
		IdleTimeout:       2 * time.Minute,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.admin = &http.Server{Handler: s.adminHandler(api), ReadHeaderTimeout: 10 * time.Second}
	s.serve(s.https, tls.NewListener(s.httpsLn, tlsCfg))
	s.serve(s.admin, s.adminLn)
	return nil
}

// bodyDeadline gives the client d to send r's body, then lifts the
// deadline, so a handler that waits longer (a direct method waits up to
// five minutes) is not cut off by it. http.Server's ReadTimeout cannot
// do this: it stays on the connection while the handler runs.
func bodyDeadline(w http.ResponseWriter, r *http.Request, d time.Duration) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return
	}
	r.Body = &liftingBody{ReadCloser: r.Body, lift: func() { rc.SetReadDeadline(time.Time{}) }}
}

// liftingBody lifts a read deadline when its body has been read.
type liftingBody struct {
	io.ReadCloser
	lift   func()
	lifted bool
}

func (b *liftingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.lifted {
		b.lifted = true
		b.lift()
	}
	return n, err
}

// listen binds a listener; a port the user may not bind gets the remedies
// in one line.
func listen(name, addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("%s listener: %w: ports below 1024 need privileges on Linux: lower the unprivileged range once "+
			"(sudo sysctl net.ipv4.ip_unprivileged_port_start=443), run the container, run as root, run in a namespace of your own "+
			"(unshare -rn), or choose another port with %s (the official SDKs need 443, 8883 and 5671)", name, err, flag)
	}
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return ln, nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "error", err)
		}
	}()
}

func (s *Server) adminHandler(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	if !s.cfg.NoDashboard {
		mux.Handle("/", dashboard.Handler(dashboard.Config{API: api, Session: s.dashboardSession, HostNames: s.cfg.HostNames}))
	}
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /runtime", handleRuntime)
	// Profiles, for performance work: the admin listener is loopback
	// unless asked otherwise.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /ca.pem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(s.caPEM)
	})
	return mux
}

// handleHealth answers whether every listener accepts connections now:
// each is dialled, and the answer is 200 with "ok" for each, or 503 with
// the error of those that did not answer.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	type listener struct {
		Addr   string `json:"addr"`
		Status string `json:"status"`
	}
	out := struct {
		Status    string              `json:"status"`
		Listeners map[string]listener `json:"listeners"`
		MQTT      string              `json:"mqtt"`
		HTTPS     string              `json:"https"`
	}{Status: "ok", Listeners: map[string]listener{}, MQTT: s.MQTTAddr(), HTTPS: s.HTTPSAddr()}
	for name, ln := range map[string]net.Listener{"mqtt": s.mqttLn, "https": s.httpsLn, "amqp": s.amqpLn, "amqp-plain": s.plainLn} {
		if ln == nil {
			continue
		}
		addr := ln.Addr().(*net.TCPAddr)
		target := addr.String()
		if addr.IP.IsUnspecified() {
			target = net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port))
		}
		st := "ok"
		c, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			st, out.Status = err.Error(), "unavailable"
		} else {
			c.Close()
		}
		out.Listeners[name] = listener{Addr: addr.String(), Status: st}
	}
	code := http.StatusOK
	if out.Status != "ok" {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(out)
}

// certificate returns the server certificate: the user's, or the
// emulator's own, made (with its CA) on first start.
func (s *Server) certificate() (tls.Certificate, error) {
	cfg := s.cfg
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			return tls.Certificate{}, errors.New("give both -tls-cert and -tls-key, or neither")
		}
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("the certificate of -tls-cert and -tls-key: %w", err)
		}
		s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[len(cert.Certificate)-1]})
		return cert, nil
	}
	ca, caKey, caPEM, renewed, err := loadOrCreateCA(cfg.DataDir, sans(cfg))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate authority: %w", err)
	}
	if renewed {
		s.log.Warn("a new CA was made: the old one expires soon, or may not sign the names now served; trust the new one", "ca", filepath.Join(cfg.DataDir, CAFile), "names", sans(cfg))
	}
	s.caPEM = caPEM
	cert, err := loadOrCreateServerCert(cfg.DataDir, ca, caKey, sans(cfg))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	return cert, nil
}

// handleRuntime answers the process's goroutines and memory, after a
// collection with ?gc=1 (live memory), for soak runs and curious users.
func handleRuntime(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]uint64{"goroutines": uint64(runtime.NumGoroutine()), "heapAllocBytes": ms.HeapAlloc,
		"heapInuseBytes": ms.HeapInuse, "sysBytes": ms.Sys, "numGC": uint64(ms.NumGC)})
}

// dashboardSession is a token of the iothubowner policy for the
// dashboard's pages, valid for an hour.
func (s *Server) dashboardSession() (dashboard.Session, error) {
	p, ok := s.hub.Policy("iothubowner")
	if !ok {
		return dashboard.Session{}, errors.New("no iothubowner policy")
	}
	exp := time.Now().Add(time.Hour)
	tok, err := sas.New(s.HostName(), p.Name, p.PrimaryKey, exp)
	if err != nil {
		return dashboard.Session{}, err
	}
	return dashboard.Session{HostName: s.HostName(), Authorization: tok.String(), Expires: exp}, nil
}

// DashboardURL is the dashboard's address, or "" when it is off.
func (s *Server) DashboardURL() string {
	if s.cfg.NoDashboard {
		return ""
	}
	host, port, _ := net.SplitHostPort(s.AdminAddr())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// Close stops every listener and connection, waits for them and closes the
// store. Calls after the first return the first one's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range []*http.Server{s.https, s.admin} {
		if srv != nil {
			srv.Shutdown(ctx)
		}
	}
	for _, ln := range []net.Listener{s.mqttLn, s.httpsLn, s.adminLn, s.amqpLn, s.plainLn} {
		if ln != nil {
			ln.Close()
		}
	}
	// The WebSocket connections first: each is served by the AMQP engine
	// or the broker, which wait for them.
	if s.ws != nil {
		s.ws.Close()
	}
	if s.amqp != nil {
		s.amqp.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
	s.wg.Wait()
	if s.hub != nil {
		s.hub.Close()
	}
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

// MQTTAddr is the bound MQTT/TLS address.
func (s *Server) MQTTAddr() string { return s.mqttLn.Addr().String() }

// HTTPSAddr is the bound HTTPS address.
func (s *Server) HTTPSAddr() string { return s.httpsLn.Addr().String() }

// AMQPAddr is the bound AMQP/TLS address, or "" when AMQP is off.
func (s *Server) AMQPAddr() string {
	if s.amqpLn == nil {
		return ""
	}
	return s.amqpLn.Addr().String()
}

// AMQPPlainAddr is the bound plain-AMQP address, or "" when none is
// served.
func (s *Server) AMQPPlainAddr() string {
	if s.plainLn == nil {
		return ""
	}
	return s.plainLn.Addr().String()
}

// AdminAddr is the bound admin address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// CAPEM is the CA certificate that signs the server certificate.
func (s *Server) CAPEM() []byte { return s.caPEM }

// CAPath is where the CA certificate is written; with the user's
// certificate, the file it came in.
func (s *Server) CAPath() string {
	if s.cfg.TLSCertFile != "" {
		return s.cfg.TLSCertFile
	}
	return filepath.Join(s.cfg.DataDir, CAFile)
}

// HostName is the hub's first host name.
func (s *Server) HostName() string { return s.cfg.HostNames[0] }

// ServiceConnectionString returns the connection string of a policy.
func (s *Server) ServiceConnectionString(policy string) (string, error) {
	p, ok := s.hub.Policy(policy)
	if !ok {
		return "", fmt.Errorf("no policy %q", policy)
	}
	return connstr.Service{HostName: s.HostName(), SharedAccessKeyName: p.Name, SharedAccessKey: p.PrimaryKey}.String(), nil
}

// EventHubConnectionString returns the built-in endpoint's Event
// Hubs-compatible connection string for a policy, as the portal shows it.
func (s *Server) EventHubConnectionString(policy string) (string, error) {
	p, ok := s.hub.Policy(policy)
	if !ok {
		return "", fmt.Errorf("no policy %q", policy)
	}
	port := 0
	if s.amqpLn != nil {
		port = s.amqpLn.Addr().(*net.TCPAddr).Port
	}
	return eventhubs.ConnectionString(s.HostName(), port, p.Name, p.PrimaryKey, s.cfg.EventHubName), nil
}

// EventHubDevelopmentConnectionString is the same with
// UseDevelopmentEmulator=true, for clients on the plain-AMQP listener, or
// "" when none is served.
func (s *Server) EventHubDevelopmentConnectionString(policy string) (string, error) {
	p, ok := s.hub.Policy(policy)
	if !ok {
		return "", fmt.Errorf("no policy %q", policy)
	}
	if s.plainLn == nil {
		return "", nil
	}
	port := s.plainLn.Addr().(*net.TCPAddr).Port
	return eventhubs.DevelopmentConnectionString(s.HostName(), port, p.Name, p.PrimaryKey, s.cfg.EventHubName), nil
}

// MQTTClients counts the MQTT clients held in memory, connected or not
// (for the emulator's own tests).
func (s *Server) MQTTClients() int { return s.broker.Clients() }

// Hub returns the hub (for the emulator's own tests and tools).
func (s *Server) Hub() *hub.Hub { return s.hub }
