// Command emulator runs a local Azure IoT Hub: devices connect over MQTT on
// TLS (8883) or WebSocket (443), back-end apps call the REST API on HTTPS
// (443), and a plain-HTTP admin port serves /health and /ca.pem.
//
// Every flag has an environment-variable twin, IOTHUB_EMULATOR_<FLAG>.
//
//	emulator [flags]          run the hub
//	emulator health [flags]   exit 0 if a running hub's admin port answers (for container health checks)
//	emulator check [flags]    verify the store of a data directory (of an emulator that is not running)
//	emulator version          print the version
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

func main() {
	os.Exit(cmdline.Main("emulator", os.Stderr, func(ctx context.Context) error {
		return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "health" {
		return health(args[1:], stderr)
	}
	if len(args) > 0 && args[0] == "check" {
		return checkStore(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, "emulator", cmdline.Version())
		return nil
	}
	f := cmdline.NewFlags("emulator", "IOTHUB_EMULATOR_")
	f.SetOutput(stderr)
	var cfg server.Config
	dataDir := f.String("data-dir", "./data", "directory for the store and the CA certificate")
	hostNames := f.String("host-names", "localhost", "comma-separated host names of the hub; the first appears in connection strings")
	extraSANs := f.String("extra-sans", "", "comma-separated extra names or IPs for the server certificate")
	tlsCert := f.String("tls-cert", "", "a certificate of yours to serve (PEM, leaf first), from mkcert say, instead of the emulator's own CA and certificate")
	tlsKey := f.String("tls-key", "", "the key of -tls-cert (PEM)")
	mqttAddr := f.String("mqtt-addr", "127.0.0.1:8883", "MQTT over TLS address (loopback by default: :8883 serves the network)")
	httpsAddr := f.String("https-addr", "127.0.0.1:443", "HTTPS address: REST API and MQTT over WebSocket (loopback by default)")
	adminAddr := f.String("admin-addr", "127.0.0.1:8080", "plain-HTTP admin address: /health, /ca.pem and the dashboard (loopback by default: the dashboard holds the iothubowner key)")
	dash := f.Bool("dashboard", true, "serve the web dashboard on the admin address")
	amqpAddr := f.String("amqp-addr", "127.0.0.1:5671", "AMQP over TLS address of service clients (cloud-to-device messages, the Event Hubs-compatible endpoint); off to serve none")
	amqpPlainAddr := f.String("amqp-plain-addr", "127.0.0.1:5672", "plain AMQP address, no TLS, of Event Hubs clients given UseDevelopmentEmulator=true; off to serve none")
	seedFile := f.String("seed-file", "", "JSON file of devices to create at start-up")
	keySeed := f.Secret("key-seed", "secret seed of the policies' keys (default: the well-known development keys)")
	lenient := f.Bool("lenient", false, "answer invalid MQTT subscriptions with SUBACK 0x80 instead of closing the connection")
	skew := f.Duration("token-skew", 5*time.Minute, "clock skew allowed on SAS token expiry")
	x509CA := f.String("x509-ca", "", "comma-separated PEM files of CA certificates that sign certificateAuthority devices (the verified CAs of an Azure hub)")
	cfgInterval := f.Duration("configuration-interval", 10*time.Second, "how often automatic device configurations are applied to the twins, besides right after one changes (Azure: about 5 minutes)")
	maxJobs := f.Int("max-concurrent-jobs", 10, "jobs that may be queued, scheduled or running at once (Azure: 1 on S1, 5 on S2, 10 on S3)")
	ehName := f.String("eventhub-name", "", "Event Hub-compatible name of the built-in endpoint (default: the first label of the first host name)")
	groups := f.String("consumer-groups", "", "comma-separated consumer groups of the built-in endpoint besides $Default")
	partitions := f.Int("partitions", 4, "partitions of the built-in endpoint (Azure's default: 4)")
	retention := f.Duration("retention", 24*time.Hour, "how long telemetry is kept for the built-in endpoint (Azure's default: 1 day)")
	retainEvents := f.Int("retain-events", 100000, "most events kept per partition, so a flood cannot fill the disk")
	retainMiB := f.Int("retain-mib", 1024, "most MiB of telemetry kept, all partitions together (the oldest go first)")
	storageCS := f.Secret("storage-connection-string", "storage account of file uploads, as a hub's file upload settings (UseDevelopmentStorage=true: Azurite on https://127.0.0.1:10000); empty: uploads answer an error")
	storageContainer := f.String("storage-container", "fileuploads", "container of file uploads")
	sasTTL := f.Duration("file-upload-sas-ttl", time.Hour, "how long a file upload's SAS is valid (Azure's default: 1 hour)")
	fileNotifications := f.Bool("file-notifications", true, "send the service a notification of every successful file upload")
	tier := f.String("tier", "", "emulate the throttles, daily quota and features of this IoT Hub tier: F1, B1, B2, B3, S1, S2 or S3 (empty: no limits)")
	units := f.Int("units", 1, "units of the emulated tier")
	window := f.Duration("throttle-window", time.Minute, "how much of a throttle's rate may be spent at once (Azure applies its throttles over minute ranges)")
	queue := f.Duration("throttle-queue", 0, "how long an operation over a throttle waits in the traffic-shaping queue before a 429 (0: refused at once)")
	latency := f.String("latency", "none", "latency added to operations: none, azure-like, or a duration such as 50ms")
	version := f.Bool("version", false, "print the version and exit")
	logFlags := f.LogFlags()
	if err := f.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Fprintln(stdout, "emulator", cmdline.Version())
		return nil
	}
	if f.NArg() > 0 {
		return fmt.Errorf("%w: unknown command %q (the commands are health, check and version; run emulator -h for the flags)", cmdline.ErrUsage, f.Arg(0))
	}
	log, err := logFlags.Logger(stderr)
	if err != nil {
		return err
	}
	cfg = server.Config{
		DataDir: *dataDir, HostNames: cmdline.SplitList(*hostNames), ExtraSANs: cmdline.SplitList(*extraSANs), TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey,
		MQTTAddr: *mqttAddr, HTTPSAddr: *httpsAddr, AdminAddr: *adminAddr, AMQPAddr: *amqpAddr, AMQPPlainAddr: *amqpPlainAddr, SeedFile: *seedFile,
		KeySeed: *keySeed, Lenient: *lenient, TokenSkew: *skew, MaxConcurrentJobs: *maxJobs, Logger: log,
		X509CAFiles: cmdline.SplitList(*x509CA), ConfigurationInterval: *cfgInterval,
		EventHubName: *ehName, ConsumerGroups: cmdline.SplitList(*groups), Partitions: *partitions,
		Retention: *retention, RetainEvents: int64(*retainEvents), RetainBytes: int64(*retainMiB) << 20,
		StorageConnectionString: *storageCS, StorageContainer: *storageContainer, FileUploadSASTTL: *sasTTL,
		NoFileNotifications: !*fileNotifications, Latency: *latency, NoDashboard: !*dash,
	}
	if *tier != "" {
		t, err := iothub.ParseTier(*tier)
		if err != nil {
			return fmt.Errorf("%w: %v", cmdline.ErrUsage, err)
		}
		cfg.Tier = iothub.TierSettings{Tier: t, Units: *units, Window: iothub.Duration(*window), Queue: iothub.Duration(*queue)}
	}
	if *skew == 0 {
		cfg.TokenSkew = -1
	}
	start := time.Now()
	s, err := server.Open(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	svc, _ := s.ServiceConnectionString("iothubowner")
	log.Info("IoT Hub emulator ready",
		"startup", time.Since(start).Round(time.Millisecond).String(),
		"mqtt", s.MQTTAddr(), "https", s.HTTPSAddr(), "amqp", s.AMQPAddr(), "amqp-plain", s.AMQPPlainAddr(), "admin", s.AdminAddr(), "ca", s.CAPath())
	if _, port, _ := net.SplitHostPort(s.HTTPSAddr()); port != "443" {
		// The string that works as printed: this project's clients take a
		// port in HostName; the official SDKs cannot leave 443.
		svc = strings.Replace(svc, "HostName="+s.HostName()+";", "HostName="+s.HostName()+":"+port+";", 1)
		fmt.Fprintf(stdout, "HTTPS is on port %s, not 443: the connection string below works with this project's clients; the official SDKs need 443, 8883 and 5671.\n", port)
	}
	if *tlsCert != "" {
		fmt.Fprintf(stdout, "Service connection string: %s\nTLS certificate: yours, %s: clients trust the CA that issued it\n", svc, *tlsCert)
	} else {
		fmt.Fprintf(stdout, "Service connection string: %s\nCA certificate: %s\n", svc, s.CAPath())
	}
	if loopbackOnly(s.MQTTAddr(), s.HTTPSAddr(), s.AMQPAddr()) {
		fmt.Fprintln(stdout, "Serving this machine only (loopback): -mqtt-addr :8883 -https-addr :443 -amqp-addr :5671 serve the network (the container image does).")
	}
	if u := s.DashboardURL(); u != "" {
		where := "this machine only (loopback); -admin-addr :8080 serves every interface"
		if !loopbackOnly(s.AdminAddr()) {
			where = "every interface: anyone who reaches it holds the iothubowner key"
		}
		fmt.Fprintf(stdout, "Dashboard: %s (%s)\n", u, where)
	}
	if s.AMQPAddr() != "" {
		eh, _ := s.EventHubConnectionString("service")
		fmt.Fprintf(stdout, "Event Hubs-compatible endpoint: %s\n", eh)
	}
	if dev, _ := s.EventHubDevelopmentConnectionString("service"); dev != "" {
		fmt.Fprintf(stdout, "Event Hubs-compatible endpoint, plain AMQP: %s\n", dev)
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// loopbackOnly reports whether every address given is a loopback one.
func loopbackOnly(addrs ...string) bool {
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// checkStore verifies the store of a data directory: exit 0 when sound.
func checkStore(args []string, stdout, stderr io.Writer) error {
	f := cmdline.NewFlags("emulator check", "IOTHUB_EMULATOR_")
	f.SetOutput(stderr)
	dataDir := f.String("data-dir", "./data", "data directory of the store to verify")
	if err := f.Parse(args); err != nil {
		return err
	}
	path := filepath.Join(*dataDir, server.StoreFile)
	n, problems, err := bolt.Check(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	for _, p := range problems {
		fmt.Fprintf(stdout, "%s: %v\n", path, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %d problems", path, len(problems))
	}
	fmt.Fprintf(stdout, "%s: sound, %d identities\n", path, n)
	return nil
}

// health asks a running emulator's admin port whether it is up.
func health(args []string, stderr io.Writer) error {
	f := cmdline.NewFlags("emulator health", "IOTHUB_EMULATOR_")
	f.SetOutput(stderr)
	addr := f.String("admin-addr", ":8080", "admin address of the running emulator")
	if err := f.Parse(args); err != nil {
		return err
	}
	host := *addr
	if host != "" && host[0] == ':' {
		host = "127.0.0.1" + host
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + host + "/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s", resp.Status)
	}
	return nil
}
