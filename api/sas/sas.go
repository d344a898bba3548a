// Package sas builds, parses and verifies IoT Hub SharedAccessSignature
// tokens (device-protocol §3, service-api §1).
//
// A token signs "<sr as sent>\n<se as sent>" with HMAC-SHA256 under a
// base64-decoded key. Verification works over the raw sr text exactly as
// the client wrote it, because official SDKs write it three ways: encoded
// with upper-case escapes (%2F), with lower-case escapes (%2f), or not
// encoded at all (the C SDK). Re-encoding it before checking the signature
// would reject some of them.
//
// The package does no I/O and never reads the clock: callers pass now.
package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Prefix starts every token; exactly one space follows the word.
const Prefix = "SharedAccessSignature "

// DefaultSkew is the clock skew a verifier allows past expiry: the 5 minutes
// of Microsoft's own token class (device-protocol §3.4).
const DefaultSkew = 5 * time.Minute

// Errors returned by Verify; callers branch on them to log a reason.
var (
	// ErrSignature means the signature matches none of the keys.
	ErrSignature = errors.New("sas: the signature does not match the primary or secondary key")
	// ErrExpired means the token's expiry, plus the allowed skew, has passed.
	ErrExpired = errors.New("sas: the token has expired")
)

// Token is a parsed SharedAccessSignature.
type Token struct {
	// Resource is the sr field exactly as sent (usually URL-encoded).
	Resource string
	// Signature is the base64 HMAC, URL-decoded.
	Signature string
	// Expiry is the se field exactly as sent.
	Expiry string
	// KeyName is skn, the shared access policy name; empty for identity keys.
	KeyName string
}

// New signs a token for resource (unencoded, such as
// "myhub.azure-devices.net/devices/dev1") that expires at expiry. The sr
// is URL-encoded with upper-case escapes, as the Node, Python and C# SDKs
// send it. keyName is empty for a device's own key.
func New(resource, keyName, key string, expiry time.Time) (Token, error) {
	k, err := DecodeKey(key)
	if err != nil {
		return Token{}, err
	}
	t := Token{Resource: Escape(resource), Expiry: strconv.FormatInt(expiry.Unix(), 10), KeyName: keyName}
	t.Signature = Sign(t.Resource, t.Expiry, k)
	return t, nil
}

// Sign returns the base64 HMAC-SHA256 of sr + "\n" + se under key.
func Sign(sr, se string, key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// DecodeKey decodes a base64 shared access key.
func DecodeKey(key string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, fmt.Errorf("sas: the key is not valid base64: %w", err)
	}
	if len(b) == 0 {
		return nil, errors.New("sas: the key is empty")
	}
	return b, nil
}

// String renders the token: sr, sig, se and, if set, skn.
func (t Token) String() string {
	s := Prefix + "sr=" + t.Resource + "&sig=" + Escape(t.Signature) + "&se=" + t.Expiry
	if t.KeyName != "" {
		s += "&skn=" + Escape(t.KeyName)
	}
	return s
}

// Parse parses a token. Field names are case-insensitive and may come in any
// order; sr, sig and se are required and none may repeat. sr and se are kept
// as sent; sig and skn are percent-decoded (a '+' stays a '+').
func Parse(s string) (Token, error) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return Token{}, fmt.Errorf("sas: the token does not start with %q", Prefix)
	}
	var t Token
	seen := map[string]bool{}
	for _, field := range strings.Split(rest, "&") {
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			return Token{}, fmt.Errorf("sas: field %q has no '='", field)
		}
		name = strings.ToLower(name)
		if seen[name] {
			return Token{}, fmt.Errorf("sas: field %q appears twice", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "sr":
			t.Resource = value
		case "sig":
			t.Signature, err = url.PathUnescape(value)
		case "se":
			t.Expiry = value
		case "skn":
			t.KeyName, err = url.PathUnescape(value)
		default:
			return Token{}, fmt.Errorf("sas: unknown field %q", name)
		}
		if err != nil {
			return Token{}, fmt.Errorf("sas: field %q is not valid percent-encoding: %w", name, err)
		}
	}
	for _, f := range []string{"sr", "sig", "se"} {
		if !seen[f] {
			return Token{}, fmt.Errorf("sas: the token has no %q field", f)
		}
	}
	if _, err := t.ExpiresAt(); err != nil {
		return Token{}, err
	}
	if _, err := t.Audience(); err != nil {
		return Token{}, err
	}
	return t, nil
}

// ExpiresAt returns se as a time. se is seconds since the Unix epoch; a
// decimal fraction is accepted (device-protocol §3.1).
func (t Token) ExpiresAt() (time.Time, error) {
	f, err := strconv.ParseFloat(t.Expiry, 64)
	if err != nil || f < 0 || f > math.MaxInt32*4 || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("sas: se %q is not a Unix time in seconds", t.Expiry)
	}
	return time.Unix(int64(f), 0), nil
}

// Audience returns sr URL-decoded: the resource the token grants.
func (t Token) Audience() (string, error) {
	a, err := url.PathUnescape(t.Resource)
	if err != nil {
		return "", fmt.Errorf("sas: sr %q is not valid percent-encoding", t.Resource)
	}
	return a, nil
}

// Verify checks that the token is signed by one of keys (base64) and has not
// expired at now, allowing skew. It does not check the scope; see Covers.
func (t Token) Verify(now time.Time, skew time.Duration, keys ...string) error {
	return t.verify(now, skew, keys, func(k string) ([]byte, error) { return DecodeKey(k) })
}

// VerifyEventHubs checks a token as the Event Hubs clients sign it: the
// HMAC keyed with the key string's UTF-8 bytes, not its base64 decoding
// (next-wave-protocols §1.2). Expiry is checked as in Verify.
func (t Token) VerifyEventHubs(now time.Time, skew time.Duration, keys ...string) error {
	return t.verify(now, skew, keys, func(k string) ([]byte, error) {
		if k == "" {
			return nil, errors.New("sas: empty key")
		}
		return []byte(k), nil
	})
}

// verify checks the signature against each key as keyBytes reads it (a
// key it cannot read is skipped), then the expiry.
func (t Token) verify(now time.Time, skew time.Duration, keys []string, keyBytes func(string) ([]byte, error)) error {
	exp, err := t.ExpiresAt()
	if err != nil {
		return err
	}
	signed := false
	for _, k := range keys {
		kb, err := keyBytes(k)
		if err == nil && hmac.Equal([]byte(Sign(t.Resource, t.Expiry, kb)), []byte(t.Signature)) {
			signed = true
			break
		}
	}
	if !signed {
		return ErrSignature
	}
	if now.After(exp.Add(skew)) {
		return ErrExpired
	}
	return nil
}

// Covers reports whether a token whose decoded sr is audience grants access
// to resource: audience must be a segment-wise prefix of resource
// ("a/b" covers "a/b/c", not "a/bc"), compared case-insensitively, with a
// trailing '/' ignored (device-protocol §3.3).
func Covers(audience, resource string) bool {
	a := strings.ToLower(strings.TrimSuffix(audience, "/"))
	r := strings.ToLower(strings.TrimSuffix(resource, "/"))
	return a == r || (a != "" && strings.HasPrefix(r, a+"/"))
}

// DeviceResource is the resource a device's token must cover:
// {host}/devices/{id}, or {host}/devices/{id}/modules/{module}.
func DeviceResource(host, deviceID, moduleID string) string {
	r := host + "/devices/" + deviceID
	if moduleID != "" {
		r += "/modules/" + moduleID
	}
	return r
}

// ParseDeviceResource reads a DeviceResource back: host, device and
// optional module. The segments are taken as they are; decode the whole
// resource first if it came percent-encoded.
func ParseDeviceResource(resource string) (host, deviceID, moduleID string, ok bool) {
	parts := strings.Split(strings.TrimSuffix(resource, "/"), "/")
	switch {
	case len(parts) == 3 && parts[1] == "devices" && parts[0] != "" && parts[2] != "":
		return parts[0], parts[2], "", true
	case len(parts) == 5 && parts[1] == "devices" && parts[3] == "modules" && parts[0] != "" && parts[2] != "" && parts[4] != "":
		return parts[0], parts[2], parts[4], true
	}
	return "", "", "", false
}

// Escape percent-encodes s as the official SDKs encode sr; see iothub.Escape.
func Escape(s string) string { return iothub.Escape(s) }
