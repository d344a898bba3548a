package server

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func open(t *testing.T, dir string, hosts ...string) *Server {
	t.Helper()
	s, err := Open(Config{DataDir: dir, HostNames: hosts, MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
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
// and reused after, and that the server certificate is reissued when the
// host names change.
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
	s := open(t, dir, "myhub.localhost", "emulator")
	defer s.Close()
	ca3, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if !bytes.Equal(ca1, ca3) {
		t.Fatal("a change of host names replaced the CA")
	}
	if got := serverCertNames(t, dir); len(got) != 5 {
		t.Fatalf("after adding a host name: %v", got)
	}
	if !bytes.Equal(s.CAPEM(), ca1) {
		t.Fatal("CAPEM is not the CA file")
	}
}

// Ensure that Open fails cleanly when a port is taken, releasing the rest.
func TestOpenPortTaken(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := Open(Config{DataDir: t.TempDir(), MQTTAddr: s.MQTTAddr(), HTTPSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
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
	_, err := Open(Config{DataDir: t.TempDir(), MQTTAddr: mqtt, HTTPSAddr: "127.0.0.1:0", AdminAddr: taken, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("Open succeeded on a taken admin port")
	}
	again, err := Open(Config{DataDir: t.TempDir(), MQTTAddr: mqtt, HTTPSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the MQTT port was not released: %v", err)
	}
	again.Close()
}
