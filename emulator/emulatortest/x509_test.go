package emulatortest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// selfSigned makes a device certificate and its SHA-256 thumbprint.
func selfSigned(t *testing.T, cn string) (*tls.Certificate, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, strings.ToUpper(hex.EncodeToString(sum[:]))
}

// Ensure that a selfSigned device connects with its certificate over TLS
// and WebSocket, on MQTT and AMQP, and that another certificate is
// refused.
func TestX509SelfSigned(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	ctx := testCtx(t)
	cert, thumb := selfSigned(t, "x509-dev")
	other, _ := selfSigned(t, "x509-dev")
	_, err := e.Service(t).CreateDevice(ctx, iothub.Device{DeviceID: "x509-dev", Authentication: iothub.Authentication{
		Type: iothub.AuthSelfSigned, X509Thumbprint: iothub.X509Thumbprint{PrimaryThumbprint: &thumb}}})
	if err != nil {
		t.Fatal(err)
	}
	cs := connstr.Device{HostName: e.HostName(), DeviceID: "x509-dev", X509: true, GatewayHostName: e.DeviceString("x509-dev", "").GatewayHostName}
	dev := e.Dial(t, cs, iotdevice.Options{Certificate: cert})
	if v, err := dev.UpdateReported(ctx, map[string]any{"auth": "x509"}); err != nil || v != 2 {
		t.Fatalf("reported over X.509: %d, %v", v, err)
	}
	dev.Close()
	for _, tr := range []iotdevice.Transport{iotdevice.MQTTWS, iotdevice.AMQP, iotdevice.AMQPWS} {
		d := e.Dial(t, e.TransportString(cs, tr), iotdevice.Options{Certificate: cert, Transport: tr})
		if _, err := d.Twin(ctx); err != nil {
			t.Fatalf("twin over %s with X.509: %v", tr, err)
		}
		d.Close()
	}
	for _, tr := range []iotdevice.Transport{iotdevice.AMQP, iotdevice.HTTPS} {
		c, err := iotdevice.New(e.TransportString(cs, tr), iotdevice.Options{Certificate: other, CAFile: e.CAFile(), Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		c.OnC2D(func([]byte, topic.Properties) {})
		if err := c.Connect(ctx); iothub.CodeOf(err)/1000 != 401 {
			t.Fatalf("another certificate over %s: %v (%v)", tr, iothub.CodeOf(err), err)
		}
	}
	bad, err := iotdevice.New(cs, iotdevice.Options{Certificate: other, CAFile: e.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Connect(ctx); err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Fatalf("another certificate: %v", err)
	}
	sas := e.AddDevice(t, "sas-dev")
	sas.SharedAccessKey, sas.X509 = "", true
	if c, err := iotdevice.New(sas, iotdevice.Options{Certificate: cert, CAFile: e.CAFile()}); err == nil {
		if err := c.Connect(ctx); err == nil {
			t.Fatal("a sas device connected with a certificate")
		}
	}
}

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA makes a root CA, or an intermediate one signed by parent.
func newCA(t *testing.T, cn string, parent *testCA) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issue makes a device certificate for cn, sent with the chain above it.
func (ca *testCA) issue(t *testing.T, cn string, chain ...*testCA) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, up := range chain {
		c.Certificate = append(c.Certificate, up.cert.Raw)
	}
	return c
}

func (ca *testCA) pemFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Ensure that a certificateAuthority device connects with a certificate
// that chains to a registered CA and names it, and that every other
// certificate is refused.
func TestX509CASigned(t *testing.T) {
	t.Parallel()
	root := newCA(t, "Test Root CA", nil)
	inter := newCA(t, "Test Intermediate CA", root)
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.X509CAFiles = []string{root.pemFile(t)} }))
	ctx := testCtx(t)
	for _, id := range []string{"ca-dev", "ca-other"} {
		if _, err := e.Service(t).CreateDevice(ctx, iothub.Device{DeviceID: id,
			Authentication: iothub.Authentication{Type: iothub.AuthCertificateAuthority}}); err != nil {
			t.Fatal(err)
		}
	}
	cs := connstr.Device{HostName: e.HostName(), DeviceID: "ca-dev", X509: true, GatewayHostName: e.DeviceString("ca-dev", "").GatewayHostName}
	dev := e.Dial(t, cs, iotdevice.Options{Certificate: inter.issue(t, "ca-dev", inter)})
	if _, err := dev.UpdateReported(ctx, map[string]any{"auth": "ca"}); err != nil {
		t.Fatalf("reported over a CA-signed certificate: %v", err)
	}
	dev.Close()
	if tw, err := e.Service(t).Twin(ctx, "ca-dev"); err != nil || tw.AuthenticationType != iothub.AuthCertificateAuthority {
		t.Fatalf("twin: %+v, %v", tw, err)
	}

	stranger := newCA(t, "Unregistered CA", nil)
	refused := map[string]*tls.Certificate{
		"no intermediate":     inter.issue(t, "ca-dev"),
		"another device's CN": inter.issue(t, "ca-other", inter),
		"unregistered CA":     stranger.issue(t, "ca-dev"),
	}
	for name, cert := range refused {
		c, err := iotdevice.New(cs, iotdevice.Options{Certificate: cert, CAFile: e.CAFile()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(ctx); err == nil || !strings.Contains(err.Error(), "not Authorized") {
			t.Errorf("%s: %v", name, err)
			c.Close()
		}
	}

	// Without a registered CA, certificateAuthority devices cannot connect.
	bare := emulatortest.Start(t)
	if _, err := bare.Service(t).CreateDevice(ctx, iothub.Device{DeviceID: "ca-dev",
		Authentication: iothub.Authentication{Type: iothub.AuthCertificateAuthority}}); err != nil {
		t.Fatal(err)
	}
	cs.GatewayHostName = bare.DeviceString("ca-dev", "").GatewayHostName
	c, _ := iotdevice.New(cs, iotdevice.Options{Certificate: inter.issue(t, "ca-dev", inter), CAFile: bare.CAFile()})
	if err := c.Connect(ctx); err == nil {
		t.Fatal("a certificateAuthority device connected to a hub with no CA")
	}
}
