package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/eventhubs"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
)

// Rights are the permissions of a shared access policy (service-api §1.3).
type Rights uint8

// Permissions.
const (
	RegistryRead Rights = 1 << iota
	RegistryWrite
	ServiceConnect
	DeviceConnect
)

// Policy is a shared access policy.
type Policy struct {
	Name         string
	PrimaryKey   string
	SecondaryKey string
	Rights       Rights
}

// DevKey and DevKey2 seed the well-known development keys. They are public:
// like Azurite's account key, they let a CI job hard-code a connection
// string. Never use them outside development.
const (
	DevKey  = "iothub-emulator-development-key-1"
	DevKey2 = "iothub-emulator-development-key-2"
)

// PolicyKey derives a policy's well-known key from a seed: base64 of
// SHA-256(seed + ":" + name), so each default policy has its own key.
func PolicyKey(seed, name string) string {
	sum := sha256.Sum256([]byte(seed + ":" + name))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// DefaultPolicies returns the hub's default policies (service-api §1.3)
// with keys derived from the two seeds.
func DefaultPolicies(primarySeed, secondarySeed string) []Policy {
	p := []Policy{
		{Name: "iothubowner", Rights: RegistryRead | RegistryWrite | ServiceConnect | DeviceConnect},
		{Name: "service", Rights: ServiceConnect},
		{Name: "device", Rights: DeviceConnect},
		{Name: "registryRead", Rights: RegistryRead},
		{Name: "registryReadWrite", Rights: RegistryRead | RegistryWrite},
	}
	for i := range p {
		p[i].PrimaryKey = PolicyKey(primarySeed, p[i].Name)
		p[i].SecondaryKey = PolicyKey(secondarySeed, p[i].Name)
	}
	return p
}

// Policy returns the policy called name.
func (h *Hub) Policy(name string) (Policy, bool) {
	for _, p := range h.opts.Policies {
		if p.Name == name {
			return p, true
		}
	}
	return Policy{}, false
}

// knownHost reports whether host (a port is ignored) is one of the hub's
// names, case-insensitively (device-protocol §1.2).
func (h *Hub) knownHost(host string) bool {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	for _, n := range h.opts.HostNames {
		if strings.EqualFold(n, host) {
			return true
		}
	}
	return false
}

// AuthenticateDevice checks a device's CONNECT credentials: host is the
// host in its username and token its password, a SAS token signed with the
// device's primary or secondary key, or with a policy that has
// DeviceConnect, whose scope covers the device (device-protocol §3.3,
// §4.2). It returns when the connection must close: the token's expiry plus
// the allowed skew (device-protocol §3.4). Every failure is an
// IoTHubUnauthorized *Error whose message says why, for the log.
func (h *Hub) AuthenticateDevice(host, deviceID, moduleID, token string) (time.Time, error) {
	fail := func(format string, args ...any) (time.Time, error) {
		return time.Time{}, iothub.Errorf(iothub.IotHubUnauthorized, format, args...)
	}
	if !h.knownHost(host) {
		return fail("host %q is not this hub (%s)", host, strings.Join(h.opts.HostNames, ", "))
	}
	e, err := h.entry(Key(deviceID, moduleID))
	if err != nil {
		return fail("%s %q is not registered", map[bool]string{true: "module", false: "device"}[moduleID != ""], Key(deviceID, moduleID))
	}
	if err := h.deviceEnabled(e); err != nil {
		return time.Time{}, err
	}
	tok, err := sas.Parse(token)
	if err != nil {
		return fail("%v", err)
	}
	keys, err := h.deviceKeys(e, tok.KeyName)
	if err != nil {
		return time.Time{}, err
	}
	if err := h.verify(tok, sas.DeviceResource(host, deviceID, moduleID), keys); err != nil {
		return time.Time{}, iothub.Errorf(iothub.IotHubUnauthorized, "%v", err)
	}
	exp, _ := tok.ExpiresAt()
	if h.tokenRevoked(Key(deviceID, moduleID), exp) {
		return fail("the token has expired (a fault expired it early)")
	}
	// The connection may last until the token expires, plus the skew.
	return exp.Add(h.opts.TokenSkew), nil
}

// AuthenticateX509 checks a device (or module) that connects with a
// client certificate and no password (device-protocol §4.2); chain is what
// the client sent, its own certificate first. A selfSigned identity's
// certificate must match its primary or secondary thumbprint (SHA-1 or
// SHA-256). A certificateAuthority device's certificate must chain, through
// the intermediates sent with it, to one of Options.X509Roots, and its
// subject common name must be the device id. It returns when the
// certificate expires.
func (h *Hub) AuthenticateX509(host, deviceID, moduleID string, chain []*x509.Certificate) (time.Time, error) {
	fail := func(format string, args ...any) (time.Time, error) {
		return time.Time{}, iothub.Errorf(iothub.IotHubUnauthorized, format, args...)
	}
	if !h.knownHost(host) {
		return fail("host %q is not this hub (%s)", host, strings.Join(h.opts.HostNames, ", "))
	}
	key := Key(deviceID, moduleID)
	e, err := h.entry(key)
	if err != nil {
		return fail("%q is not registered", key)
	}
	if err := h.deviceEnabled(e); err != nil {
		return time.Time{}, err
	}
	if len(chain) == 0 {
		return fail("%q sent neither a SAS token nor a client certificate", key)
	}
	cert := chain[0]
	now := h.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fail("the client certificate of %q is not valid now", key)
	}
	auth := e.rec.Load().Device.Authentication
	switch {
	case auth.Type == iothub.AuthCertificateAuthority && moduleID == "":
		if h.opts.X509Roots == nil {
			return fail("%q is a certificateAuthority device, and no CA certificate is registered with the emulator", key)
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := cert.Verify(x509.VerifyOptions{Roots: h.opts.X509Roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return fail("the client certificate of %q does not chain to a registered CA: %v", key, err)
		}
		if cert.Subject.CommonName != deviceID {
			return fail("the client certificate's common name %q is not the device id %q", cert.Subject.CommonName, deviceID)
		}
		return cert.NotAfter, nil
	case auth.Type != iothub.AuthSelfSigned:
		return fail("%q is a %s identity; only selfSigned identities and certificateAuthority devices may use a certificate", key, auth.Type)
	}
	s1 := sha1.Sum(cert.Raw)
	s256 := sha256.Sum256(cert.Raw)
	for _, want := range []*string{auth.X509Thumbprint.PrimaryThumbprint, auth.X509Thumbprint.SecondaryThumbprint} {
		if want == nil {
			continue
		}
		if strings.EqualFold(*want, hex.EncodeToString(s1[:])) || strings.EqualFold(*want, hex.EncodeToString(s256[:])) {
			return cert.NotAfter, nil
		}
	}
	return fail("the client certificate's thumbprint matches neither thumbprint of %q", key)
}

func (h *Hub) deviceKeys(e *entry, keyName string) ([]string, error) {
	if keyName == "" {
		k := e.rec.Load().Device.Authentication.SymmetricKey
		return []string{k.PrimaryKey, k.SecondaryKey}, nil
	}
	p, ok := h.Policy(keyName)
	if !ok || p.Rights&DeviceConnect == 0 {
		return nil, iothub.Errorf(iothub.IotHubUnauthorized, "policy %q does not exist or lacks DeviceConnect", keyName)
	}
	return []string{p.PrimaryKey, p.SecondaryKey}, nil
}

// verify checks signature, expiry and scope.
func (h *Hub) verify(tok sas.Token, resource string, keys []string) error {
	if err := tok.Verify(h.now(), h.opts.TokenSkew, keys...); err != nil {
		return err
	}
	aud, _ := tok.Audience()
	if !sas.Covers(aud, resource) {
		return errors.New("the token's scope " + aud + " does not cover " + resource)
	}
	return nil
}

// AuthorizeService checks the Authorization header of a service request:
// a SAS token of a policy with every right in need, scoped to the hub
// (service-api §1.2). Failures are IotHubUnauthorizedAccess.
func (h *Hub) AuthorizeService(header string, need Rights) error {
	fail := func(reason string) error {
		h.log.Info("service request unauthorized", "reason", reason)
		return iothub.Errorf(iothub.IotHubUnauthorizedAccess, "Unauthorized")
	}
	if header == "" {
		return fail("no Authorization header")
	}
	if v, ok := h.serviceTokens.Load(header); ok {
		// A token verified before: only its expiry and rights can have changed.
		vt := v.(verifiedToken)
		if h.now().Before(vt.until) && vt.rights&need == need {
			return nil
		}
	}
	tok, p, aud, err := h.policyToken(header)
	if err != nil {
		return fail(err.Error())
	}
	// A token scoped to the hub, or to its messages/events, which the
	// official samples sign for the built-in endpoint's redirect.
	host, path, _ := strings.Cut(strings.TrimSuffix(aud, "/"), "/")
	if !h.knownHost(host) || (path != "" && !strings.EqualFold(path, "messages/events")) {
		return fail("token scope " + aud + " is not this hub")
	}
	if err := tok.Verify(h.now(), h.opts.TokenSkew, p.PrimaryKey, p.SecondaryKey); err != nil {
		return fail(err.Error())
	}
	if p.Rights&need != need {
		return fail("policy " + p.Name + " lacks a required permission")
	}
	h.rememberToken(header, tok, p.Rights)
	return nil
}

// policyToken parses a shared access policy's token and finds its policy;
// the error says why not, for the log. It returns the decoded audience.
func (h *Hub) policyToken(s string) (sas.Token, Policy, string, error) {
	tok, err := sas.Parse(s)
	if err != nil {
		return sas.Token{}, Policy{}, "", err
	}
	p, ok := h.Policy(tok.KeyName)
	if !ok {
		return sas.Token{}, Policy{}, "", errors.New("unknown policy " + tok.KeyName)
	}
	aud, _ := tok.Audience()
	return tok, p, aud, nil
}

// verifiedToken is a service token whose signature was checked.
type verifiedToken struct {
	until  time.Time
	rights Rights
}

// maxRememberedTokens bounds the verified-token cache; SDKs reuse a token
// for many requests, so a small cache saves an HMAC per request.
const maxRememberedTokens = 1024

func (h *Hub) rememberToken(header string, tok sas.Token, rights Rights) {
	exp, _ := tok.ExpiresAt()
	if h.tokenCount.Add(1) > maxRememberedTokens {
		h.serviceTokens.Clear()
		h.tokenCount.Store(1)
	}
	h.serviceTokens.Store(header, verifiedToken{until: exp.Add(h.opts.TokenSkew), rights: rights})
}

// AuthorizeEventHubs checks a token an Event Hubs client signed for the
// built-in endpoint: sr is sb://, amqps:// or (on plain AMQP) amqp://
// {host}[:port]/..., signed with a policy
// key's UTF-8 bytes (next-wave-protocols §1.2), and the policy must have
// ServiceConnect. It returns the token's expiry.
func (h *Hub) AuthorizeEventHubs(token string) (time.Time, error) {
	fail := func(reason string) (time.Time, error) {
		h.log.Info("event hubs token refused", "reason", reason)
		return time.Time{}, iothub.Errorf(iothub.IotHubUnauthorizedAccess, "Unauthorized")
	}
	tok, p, aud, err := h.policyToken(token)
	if err != nil {
		return fail(err.Error())
	}
	host, _, ok := eventhubs.SplitAudience(aud)
	if !ok || !h.knownHost(host) {
		return fail("token audience " + aud + " is not this hub's endpoint")
	}
	if err := tok.VerifyEventHubs(h.now(), h.opts.TokenSkew, p.PrimaryKey, p.SecondaryKey); err != nil {
		return fail(err.Error())
	}
	if p.Rights&ServiceConnect == 0 {
		return fail("policy " + p.Name + " lacks ServiceConnect")
	}
	exp, _ := tok.ExpiresAt()
	return exp, nil
}
