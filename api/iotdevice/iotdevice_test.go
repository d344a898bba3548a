package iotdevice_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
)

const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// tlsListener serves TLS for localhost with a self-signed certificate
// written to a CA file.
func tlsListener(t *testing.T) (net.Listener, string) {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ca
}

// readPacket reads one MQTT packet: its type and flags byte and its body.
func readPacket(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	h, err := r.ReadByte()
	if err != nil {
		t.Fatalf("read packet: %v", err)
	}
	n, mul := 0, 1
	for {
		b, _ := r.ReadByte()
		n += int(b&127) * mul
		if b&128 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	return h, body
}

func str(b []byte) (string, []byte) {
	n := int(binary.BigEndian.Uint16(b))
	return string(b[2 : 2+n]), b[2+n:]
}

func packet(typ byte, body []byte) []byte {
	out := []byte{typ}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 128
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func publish(topic string, payload []byte) []byte {
	body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	return packet(0x30, append(body, payload...))
}

// Ensure that the device client speaks exactly as device-protocol §3, §4,
// §5, §10 and §11 say the SDKs do: CONNECT 3.1.1 with CleanSession=0 and
// keep-alive 180, the username and SAS password, the three subscriptions,
// twin GET with a " " body, method answers on the response topic.
func TestWireFormat(t *testing.T) {
	ln, ca := tlsListener(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	cs := connstr.Device{HostName: "myhub.azure-devices.net", DeviceID: "dev1", SharedAccessKey: key, GatewayHostName: "localhost:" + port}
	type result struct {
		connect  []byte
		filters  []string
		twinGet  string
		methodRe string
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var res result
		_, res.connect = readPacket(t, r)
		c.Write([]byte{0x20, 2, 0, 0}) // CONNACK accepted
		h, sub := readPacket(t, r)
		if h>>4 != 8 {
			t.Errorf("expected SUBSCRIBE, got type %d", h>>4)
		}
		id, rest := sub[:2], sub[2:]
		var codes []byte
		for len(rest) > 0 {
			var f string
			f, rest = str(rest)
			res.filters = append(res.filters, f+" qos "+string(rune('0'+rest[0])))
			codes = append(codes, rest[0])
			rest = rest[1:]
		}
		c.Write(packet(0x90, append(id, codes...)))
		_, pub := readPacket(t, r)
		topic, payload := str(pub)
		res.twinGet = topic + " " + strings.ReplaceAll(string(payload), " ", "<sp>")
		rid := topic[strings.Index(topic, "$rid=")+5:]
		c.Write(publish("$iothub/twin/res/200/?$rid="+rid, []byte(`{"desired":{"x":1,"$version":2},"reported":{"$version":1}}`)))
		c.Write(publish("$iothub/methods/POST/reboot/?$rid=a", []byte(`null`)))
		_, pub = readPacket(t, r)
		topic, payload = str(pub)
		res.methodRe = topic + " " + string(payload)
		done <- res
		io.Copy(io.Discard, r)
	}()
	cli, err := iotdevice.New(cs, iotdevice.Options{CAFile: ca, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cli.OnMethod("reboot", func(context.Context, json.RawMessage) (int, any) { return 200, map[string]string{"ok": "yes"} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cli.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	twin, err := cli.Twin(ctx)
	if err != nil || twin.Desired.Version != 2 {
		t.Fatalf("twin %+v, %v", twin, err)
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("the exchange did not finish")
	}

	proto, rest := str(res.connect)
	level, flags, keepalive := rest[0], rest[1], binary.BigEndian.Uint16(rest[2:4])
	clientID, rest := str(rest[4:])
	username, rest := str(rest)
	password, _ := str(rest)
	if proto != "MQTT" || level != 4 || flags&0x02 != 0 || flags&0xC0 != 0xC0 || keepalive != 180 || clientID != "dev1" {
		t.Fatalf("CONNECT %s level %d flags %08b keepalive %d client %q", proto, level, flags, keepalive, clientID)
	}
	if !strings.HasPrefix(username, "myhub.azure-devices.net/dev1/?api-version=2021-04-12&DeviceClientType=") {
		t.Fatalf("username %q", username)
	}
	tok, err := sas.Parse(password)
	if err != nil || tok.Resource != "myhub.azure-devices.net%2Fdevices%2Fdev1" || tok.KeyName != "" || tok.Verify(time.Now(), 0, key) != nil {
		t.Fatalf("password %q (%v)", password, err)
	}
	if exp, _ := tok.ExpiresAt(); time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Fatalf("token expires at %v", exp)
	}
	if strings.Join(res.filters, ",") == "" || len(res.filters) != 3 {
		t.Fatalf("filters %v", res.filters)
	}
	for _, want := range []string{"$iothub/methods/POST/# qos 0", "$iothub/twin/res/# qos 0", "$iothub/twin/PATCH/properties/desired/# qos 0"} {
		if !strings.Contains(strings.Join(res.filters, ","), want) {
			t.Fatalf("filters %v lack %s", res.filters, want)
		}
	}
	if res.twinGet != "$iothub/twin/GET/?$rid=1 <sp>" {
		t.Fatalf("twin GET %q", res.twinGet)
	}
	if res.methodRe != `$iothub/methods/res/200/?$rid=a {"ok":"yes"}` {
		t.Fatalf("method response %q", res.methodRe)
	}
}
