package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func open(t *testing.T, dir string, hosts ...string) *Server {
	t.Helper()
	s, err := Open(Config{DataDir: dir, HostNames: hosts, MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", AMQPPlainAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serverCertNames(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, serverFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// Ensure that the CA and the server certificate are created on first start
// and reused after, that the server certificate is reissued when the
// host names change, and that the CA is too when it may not sign a new
// name (its name constraints were made for the old ones).
func TestCertificatesReused(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, "myhub.localhost").Close()
	ca1, _ := os.ReadFile(filepath.Join(dir, CAFile))
	srv1, _ := os.ReadFile(filepath.Join(dir, serverFile))
	open(t, dir, "myhub.localhost").Close()
	ca2, _ := os.ReadFile(filepath.Join(dir, CAFile))
	srv2, _ := os.ReadFile(filepath.Join(dir, serverFile))
	if !bytes.Equal(ca1, ca2) || !bytes.Equal(srv1, srv2) {
		t.Fatal("a restart replaced the certificates")
	}
	if got := serverCertNames(t, dir); len(got) != 4 || got[0] != "myhub.localhost" {
		t.Fatalf("names %v", got)
	}
	open(t, dir, "myhub.localhost", "other.localhost").Close() // within the constraint "localhost"
	if ca, _ := os.ReadFile(filepath.Join(dir, CAFile)); !bytes.Equal(ca1, ca) {
		t.Fatal("a host name the CA may sign replaced it")
	}
	if got := serverCertNames(t, dir); len(got) != 5 {
		t.Fatalf("after adding a host name: %v", got)
	}
	s := open(t, dir, "myhub.localhost", "emulator")
	defer s.Close()
	ca3, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if bytes.Equal(ca1, ca3) {
		t.Fatal("a host name the CA may not sign kept it")
	}
	if !bytes.Equal(s.CAPEM(), ca3) {
		t.Fatal("CAPEM is not the CA file")
	}
}

// Ensure that the CA users trust machine-wide signs for the emulator's
// names only, and not for long: a certificate its key signs for another
// name does not verify, the server's does, and the CA lasts about a year.
func TestCANameConstraints(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, "myhub.local").Close()
	ca, caKey, _, _, err := loadOrCreateCA(dir, []string{"myhub.local", "localhost", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life > 400*24*time.Hour {
		t.Fatalf("the CA lasts %v", life)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	verify := func(name string) error {
		c, err := serverCert(ca, caKey, []string{name})
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		host := name
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host})
		return err
	}
	for _, ok := range []string{"myhub.local", "localhost", "a.localhost", "127.0.0.1", "::1"} {
		if err := verify(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"login.microsoftonline.com", "myhub.azure-devices.net", "10.0.0.1"} {
		if err := verify(bad); err == nil {
			t.Errorf("the CA's key signed %s and it verified", bad)
		}
	}
}

// Ensure that Open fails cleanly when a port is taken, releasing the rest.
func TestOpenPortTaken(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := Open(Config{DataDir: t.TempDir(), MQTTAddr: s.MQTTAddr(), HTTPSAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", AMQPPlainAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("Open succeeded on a taken port")
	}
}

// Ensure that a failed Open releases the ports it had bound.
func TestOpenFailureReleasesPorts(t *testing.T) {
	s := open(t, t.TempDir())
	taken := s.AdminAddr()
	defer s.Close()
	free := open(t, t.TempDir())
	mqtt := free.MQTTAddr()
	free.Close()
	_, err := Open(Config{DataDir: t.TempDir(), MQTTAddr: mqtt, HTTPSAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", AMQPPlainAddr: "127.0.0.1:0", AdminAddr: taken, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("Open succeeded on a taken admin port")
	}
	again, err := Open(Config{DataDir: t.TempDir(), MQTTAddr: mqtt, HTTPSAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", AMQPPlainAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the MQTT port was not released: %v", err)
	}
	again.Close()
}

// Ensure that a seed file creates its devices with their keys, tags and
// desired properties, leaves existing devices alone on the next start, and
// that a malformed seed file stops the start.
func TestSeedFile(t *testing.T) {
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "seed.json")
	key := "xqC/trbUwx2w88aVh1ZLRQk51/kWbqj1qK6Cp7SlCrs="
	os.WriteFile(seedPath, []byte(`{"devices":[{"deviceId":"sim-1","primaryKey":"`+key+`","tags":{"site":"lab"},"desired":{"telemetryInterval":5}},{"deviceId":"sim-2","status":"disabled"}]}`), 0o644)
	cfg := func(d string) Config {
		return Config{DataDir: d, SeedFile: seedPath, MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", AMQPPlainAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}
	}
	data := filepath.Join(dir, "data")
	s, err := Open(cfg(data))
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Hub().Device("sim-1")
	if err != nil || d.Authentication.SymmetricKey.PrimaryKey != key || d.Authentication.SymmetricKey.SecondaryKey == "" {
		t.Fatalf("sim-1: %+v, %v", d, err)
	}
	tw, _ := s.Hub().Twin("sim-1")
	if tw.Tags["site"] != "lab" || fmt.Sprint(tw.Properties.Desired.Props["telemetryInterval"]) != "5" {
		t.Fatalf("sim-1 twin: %+v", tw)
	}
	if d2, err := s.Hub().Device("sim-2"); err != nil || d2.Status != "disabled" {
		t.Fatalf("sim-2: %+v, %v", d2, err)
	}
	version := tw.Properties.Desired.Version
	s.Close()
	s, err = Open(cfg(data))
	if err != nil {
		t.Fatal(err)
	}
	tw, _ = s.Hub().Twin("sim-1")
	s.Close()
	if tw.Properties.Desired.Version != version {
		t.Fatalf("a second start seeded again: desired $version %d, want %d", tw.Properties.Desired.Version, version)
	}
	os.WriteFile(seedPath, []byte(`{"devices":[{"id":"typo"}]}`), 0o644)
	if _, err := Open(cfg(t.TempDir())); err == nil || !strings.Contains(err.Error(), "seed file") {
		t.Fatalf("a malformed seed file: %v", err)
	}
}

// Ensure that /health says each listener's state as it is: ok while all
// accept connections, 503 naming the one that stopped.
func TestHealthReportsListeners(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	get := func() (int, map[string]any) {
		t.Helper()
		res, err := http.Get("http://" + s.AdminAddr() + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	if code, body := get(); code != 200 || body["status"] != "ok" || len(body["listeners"].(map[string]any)) != 4 {
		t.Fatalf("healthy: %d %v", code, body)
	}
	s.mqttLn.Close()
	code, body := get()
	mqtt := body["listeners"].(map[string]any)["mqtt"].(map[string]any)
	if code != http.StatusServiceUnavailable || body["status"] != "unavailable" || mqtt["status"] == "ok" {
		t.Fatalf("with the MQTT listener closed: %d %v", code, body)
	}
}

// Ensure that a certificate of the user's (-tls-cert, -tls-key) is
// served instead of the emulator's own: a client that trusts only the
// user's CA connects, no CA is made in the data directory, and /ca.pem
// serves the chain's issuer.
func TestUserCertificate(t *testing.T) {
	dir, own := t.TempDir(), t.TempDir()
	ca, caKey, _, _, err := loadOrCreateCA(own, []string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := serverCert(ca, caKey, []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(own, "mine.pem"), filepath.Join(own, "mine-key.pem")
	var chain []byte
	for _, der := range leaf.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kb, _ := x509.MarshalECPrivateKey(leaf.PrivateKey.(*ecdsa.PrivateKey))
	os.WriteFile(certFile, chain, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	s, err := Open(Config{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", AMQPPlainAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		TLSCertFile: certFile, TLSKeyFile: keyFile, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	c, err := tls.Dial("tcp", s.HTTPSAddr(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("a client trusting the user's CA: %v", err)
	}
	c.Close()
	if _, err := os.Stat(filepath.Join(dir, CAFile)); !os.IsNotExist(err) {
		t.Fatalf("a CA was made in the data directory: %v", err)
	}
	if blk, _ := pem.Decode(s.CAPEM()); blk == nil || !bytes.Equal(blk.Bytes, ca.Raw) {
		t.Fatal("/ca.pem is not the issuer of the user's certificate")
	}
	if _, err := Open(Config{DataDir: t.TempDir(), TLSCertFile: certFile, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("-tls-cert without -tls-key was accepted")
	}
}
