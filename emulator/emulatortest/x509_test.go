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
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
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
// and WebSocket, and that another certificate is refused.
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
	ws := e.Dial(t, e.WebSocketString(cs), iotdevice.Options{Certificate: cert, WebSocket: true})
	if _, err := ws.Twin(ctx); err != nil {
		t.Fatalf("twin over WebSocket with X.509: %v", err)
	}
	ws.Close()
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
