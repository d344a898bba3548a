package sas

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The key and expiry of the test vectors in device-protocol §3.5: key bytes
// 0x00..0x1f, se=1735689600.
const (
	vectorKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	vectorSE  = "1735689600"
	otherKey  = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
)

var vectorTime = time.Unix(1735689600, 0)

// Ensure that signatures match the vectors of device-protocol §3.5, one per
// way the official SDKs write sr.
func TestSignVectors(t *testing.T) {
	key, _ := DecodeKey(vectorKey)
	tests := []struct{ sr, sig, module string }{
		{"myhub.azure-devices.net%2Fdevices%2Fdevice1", "xH0/+RciNlrmGRmft/GaRUOWtxiP3dKxt1GTGUR2qrw=", ""},
		{"myhub.azure-devices.net%2fdevices%2fdevice1", "LwFNTb4p8ood9+bXq23sOOeZZW9JVqghzxnFE8EUWgM=", ""},
		{"myhub.azure-devices.net/devices/device1", "3uJJQQ4MXwXAs7XP/tIP4eE73oqHg6TsQeW5Vc9dbak=", ""},
		{"myhub.azure-devices.net%2Fdevices%2Fdevice1%2Fmodules%2Fmod1", "BOaIZBamgpulGCmYcXHGviqGgquzgiiWyXoj/+oCwyU=", "mod1"},
	}
	for _, tt := range tests {
		if got := Sign(tt.sr, vectorSE, key); got != tt.sig {
			t.Errorf("Sign(%s) = %s, want %s", tt.sr, got, tt.sig)
		}
		tok := Token{Resource: tt.sr, Signature: tt.sig, Expiry: vectorSE}
		parsed, err := Parse(tok.String())
		if err != nil {
			t.Fatalf("Parse(%s): %v", tok, err)
		}
		if err := parsed.Verify(vectorTime.Add(-time.Hour), DefaultSkew, otherKey, vectorKey); err != nil {
			t.Errorf("Verify(%s) with the secondary key: %v", tt.sr, err)
		}
		aud, _ := parsed.Audience()
		if !Covers(aud, DeviceResource("MyHub.azure-devices.net", "device1", tt.module)) {
			t.Errorf("audience %q does not cover device1", aud)
		}
	}
	full := "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1&sig=xH0%2F%2BRciNlrmGRmft%2FGaRUOWtxiP3dKxt1GTGUR2qrw%3D&se=1735689600"
	tok, err := New("myhub.azure-devices.net/devices/device1", "", vectorKey, vectorTime)
	if err != nil || tok.String() != full {
		t.Fatalf("New = %s, %v\nwant %s", tok, err, full)
	}
}

func TestVerify(t *testing.T) {
	tok, _ := New("myhub/devices/d1", "", vectorKey, vectorTime)
	tests := []struct {
		name string
		now  time.Time
		keys []string
		want error
	}{
		{"OK", vectorTime.Add(-time.Minute), []string{vectorKey}, nil},
		{"OKWithinSkew", vectorTime.Add(4 * time.Minute), []string{vectorKey}, nil},
		{"ErrExpired", vectorTime.Add(6 * time.Minute), []string{vectorKey}, ErrExpired},
		{"ErrWrongKey", vectorTime, []string{otherKey}, ErrSignature},
		{"ErrNoKeys", vectorTime, nil, ErrSignature},
		{"ErrBadKeyIgnored", vectorTime, []string{"!!", otherKey}, ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tok.Verify(tt.now, DefaultSkew, tt.keys...); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	tampered := tok
	tampered.Expiry = "1735689601"
	if tampered.Verify(vectorTime, 0, vectorKey) != ErrSignature {
		t.Fatal("a token with a changed se verified")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     Token
		errPart  string
	}{
		{"SDKOrder", "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=YQ%3D%3D&se=10&skn=device", Token{"h%2Fdevices%2Fd", "YQ==", "10", "device"}, ""},
		{"DocsOrder", "SharedAccessSignature sig=YQ%3D%3D&se=10&sr=h", Token{"h", "YQ==", "10", ""}, ""},
		{"UpperCaseNames", "SharedAccessSignature SR=h&SIG=YQ==&SE=10", Token{"h", "YQ==", "10", ""}, ""},
		{"PlusKept", "SharedAccessSignature sr=h&sig=a+b=&se=10", Token{"h", "a+b=", "10", ""}, ""},
		{"DecimalExpiry", "SharedAccessSignature sr=h&sig=a&se=10.5", Token{"h", "a", "10.5", ""}, ""},
		{"ErrPrefix", "sharedaccesssignature sr=h&sig=a&se=1", Token{}, "does not start"},
		{"ErrNoSpace", "SharedAccessSignaturesr=h&sig=a&se=1", Token{}, "does not start"},
		{"ErrMissingSig", "SharedAccessSignature sr=h&se=1", Token{}, `no "sig"`},
		{"ErrMissingSE", "SharedAccessSignature sr=h&sig=a", Token{}, `no "se"`},
		{"ErrMissingSR", "SharedAccessSignature sig=a&se=1", Token{}, `no "sr"`},
		{"ErrDuplicate", "SharedAccessSignature sr=h&sr=h&sig=a&se=1", Token{}, "twice"},
		{"ErrUnknown", "SharedAccessSignature sr=h&sig=a&se=1&x=y", Token{}, "unknown field"},
		{"ErrNoEquals", "SharedAccessSignature sr=h&sig&se=1", Token{}, "no '='"},
		{"ErrBadExpiry", "SharedAccessSignature sr=h&sig=a&se=soon", Token{}, "not a Unix time"},
		{"ErrBadEscape", "SharedAccessSignature sr=h%zz&sig=a&se=1", Token{}, "percent-encoding"},
		{"ErrEmpty", "", Token{}, "does not start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("error %v, want one containing %q", err, tt.errPart)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		aud, res string
		want     bool
	}{
		{"hub/devices/d1", "hub/devices/d1", true},
		{"HUB/Devices/D1", "hub/devices/d1", true},
		{"hub/devices", "hub/devices/d1", true},
		{"hub", "hub/devices/d1/modules/m", true},
		{"hub/", "hub", true},
		{"hub/devices/d", "hub/devices/d1", false},
		{"hub/devices/d1/modules/m", "hub/devices/d1", false},
		{"other", "hub/devices/d1", false},
		{"", "hub", false},
	}
	for _, tt := range tests {
		if got := Covers(tt.aud, tt.res); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v", tt.aud, tt.res, got)
		}
	}
}

func TestEscape(t *testing.T) {
	if got := Escape("localhost:8883/devices/a b!*~"); got != "localhost%3A8883%2Fdevices%2Fa%20b%21%2A~" {
		t.Fatalf("got %s", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1&sig=xH0%2F%2BRciNlrmGRmft%2FGaRUOWtxiP3dKxt1GTGUR2qrw%3D&se=1735689600")
	f.Add("SharedAccessSignature sig=a&se=1&sr=h&skn=iothubowner")
	f.Add("SharedAccessSignature sr=h/devices/d&sig=a%2&se=1")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(tok.String())
		if err != nil {
			t.Fatalf("Parse(%q) ok but Parse(String()) = %v", s, err)
		}
		if again != tok {
			t.Fatalf("round trip: %+v != %+v", again, tok)
		}
		_ = tok.Verify(time.Unix(0, 0), DefaultSkew, vectorKey)
	})
}

// Ensure that Event Hubs tokens verify with the key string's bytes, with
// the vectors core-amqp's createSasTokenProvider produced for this key
// (next-wave-protocols §1.2), and that the base64-decoded key's signature
// does not.
func TestVerifyEventHubs(t *testing.T) {
	const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	now := time.Unix(1735689000, 0)
	for _, tok := range []string{
		"SharedAccessSignature sr=sb%3A%2F%2Flocalhost%2Fmyhub&sig=qvjNuiNRDT%2BDN8lC%2Fj0BxMOJRwLTmd9RHmqM8IcPV2Y%3D&se=1735689600&skn=iothubowner",
		"SharedAccessSignature sr=sb%3A%2F%2Flocalhost%2Fmyhub%2FConsumerGroups%2F%24default%2FPartitions%2F0&sig=9xhOgUBCrOySjyurJnXoeUh8NvukcOnN8BdTOn1x1Eo%3D&se=1735689600&skn=iothubowner",
		"SharedAccessSignature sr=sb%3A%2F%2Flocalhost%2Fmyhub%2F%24management&sig=UZ0P4MqzpBH%2FWxDD4ATxlE8RMTGxauB1bbcPj50%2FMnI%3D&se=1735689600&skn=iothubowner",
	} {
		p, err := Parse(tok)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.VerifyEventHubs(now, 0, "other", key); err != nil {
			t.Errorf("%s: %v", tok, err)
		}
		if err := p.VerifyEventHubs(now.Add(time.Hour), 0, key); err != ErrExpired {
			t.Errorf("an hour later: %v", err)
		}
	}
	wrong, _ := Parse("SharedAccessSignature sr=sb%3A%2F%2Flocalhost%2Fmyhub&sig=xOp1LRwtkjGgI%2F9ngcZrRq4yfMnI%2BmrIbcAyTcztoQE%3D&se=1735689600&skn=iothubowner")
	if err := wrong.VerifyEventHubs(now, 0, key); err != ErrSignature {
		t.Errorf("signed with the decoded key: %v", err)
	}
	if err := wrong.Verify(now, 0, key); err != nil {
		t.Errorf("the decoded key's signature is an IoT Hub token: %v", err)
	}
}

func TestParseDeviceResource(t *testing.T) {
	for _, tt := range []struct{ in, host, dev, mod string }{
		{"localhost/devices/d1", "localhost", "d1", ""},
		{"h.azure-devices.net/devices/d1/modules/m1/", "h.azure-devices.net", "d1", "m1"},
	} {
		h, d, m, ok := ParseDeviceResource(tt.in)
		if !ok || h != tt.host || d != tt.dev || m != tt.mod || DeviceResource(h, d, m) != strings.TrimSuffix(tt.in, "/") {
			t.Errorf("%s: %q %q %q %v", tt.in, h, d, m, ok)
		}
	}
	for _, bad := range []string{"", "localhost", "localhost/devices", "localhost/devices//", "/devices/d", "h/things/d", "h/devices/d/modules", "h/devices/d/x/m"} {
		if _, _, _, ok := ParseDeviceResource(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
