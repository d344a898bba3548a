// Package connstr parses and formats IoT Hub connection strings: device
// and module strings for device apps, and shared-access-policy strings for
// service apps (device-protocol §2).
//
// A connection string is key=value pairs separated by ';'. Each pair splits
// at its first '=' (base64 keys end in '='), keys are case-sensitive as in
// the C SDK, and a trailing ';' is tolerated.
//
// HostName may carry a port ("localhost:8883"). The official SDKs cannot use
// one for HTTPS; the project's own clients accept it as a convenience for
// reaching an emulator on a non-standard port.
package connstr

import (
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Device is a device or module connection string.
type Device struct {
	HostName              string
	DeviceID              string
	ModuleID              string // module identity; empty for a device
	SharedAccessKey       string // base64; the device's key or, with SharedAccessKeyName, a policy key
	SharedAccessKeyName   string // a hub policy with DeviceConnect, when the key is a policy key
	SharedAccessSignature string // a ready-made token instead of a key
	GatewayHostName       string // host the socket goes to; HostName still names the hub
	X509                  bool   // x509=true: the device authenticates with a certificate
}

// Service is a shared-access-policy connection string for a back-end app.
type Service struct {
	HostName            string
	SharedAccessKeyName string
	SharedAccessKey     string
}

var deviceKeys = []string{"HostName", "DeviceId", "ModuleId", "SharedAccessKeyName", "SharedAccessKey", "SharedAccessSignature", "GatewayHostName", "x509"}
var serviceKeys = []string{"HostName", "SharedAccessKeyName", "SharedAccessKey"}

// ParseDevice parses a device or module connection string. It needs
// HostName, DeviceId and exactly one of SharedAccessKey,
// SharedAccessSignature or x509=true.
func ParseDevice(s string) (Device, error) {
	m, err := split(s, deviceKeys)
	if err != nil {
		return Device{}, err
	}
	d := Device{
		HostName: m["HostName"], DeviceID: m["DeviceId"], ModuleID: m["ModuleId"],
		SharedAccessKey: m["SharedAccessKey"], SharedAccessKeyName: m["SharedAccessKeyName"],
		SharedAccessSignature: m["SharedAccessSignature"], GatewayHostName: m["GatewayHostName"],
	}
	if x, ok := m["x509"]; ok {
		if x != "true" {
			return Device{}, fmt.Errorf("connection string: x509 must be \"true\", not %q", x)
		}
		d.X509 = true
	}
	return d, d.validate()
}

func (d Device) validate() error {
	if err := require("HostName", d.HostName); err != nil {
		return err
	}
	if err := checkHost("HostName", d.HostName); err != nil {
		return err
	}
	if d.GatewayHostName != "" {
		if err := checkHost("GatewayHostName", d.GatewayHostName); err != nil {
			return err
		}
	}
	if err := require("DeviceId", d.DeviceID); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{d.SharedAccessKey != "", d.SharedAccessSignature != "", d.X509} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("connection string: needs exactly one of SharedAccessKey, SharedAccessSignature or x509=true")
	}
	if d.SharedAccessKey != "" {
		return checkKey(d.SharedAccessKey)
	}
	if d.SharedAccessKeyName != "" {
		return fmt.Errorf("connection string: SharedAccessKeyName needs SharedAccessKey")
	}
	return nil
}

// String formats d with its keys in the usual order.
func (d Device) String() string {
	x509 := ""
	if d.X509 {
		x509 = "true"
	}
	return join([][2]string{
		{"HostName", d.HostName}, {"DeviceId", d.DeviceID}, {"ModuleId", d.ModuleID},
		{"SharedAccessKeyName", d.SharedAccessKeyName}, {"SharedAccessKey", d.SharedAccessKey},
		{"SharedAccessSignature", d.SharedAccessSignature}, {"GatewayHostName", d.GatewayHostName},
		{"x509", x509},
	})
}

// ParseService parses a service connection string; all three keys are
// required.
func ParseService(s string) (Service, error) {
	m, err := split(s, serviceKeys)
	if err != nil {
		return Service{}, err
	}
	svc := Service{HostName: m["HostName"], SharedAccessKeyName: m["SharedAccessKeyName"], SharedAccessKey: m["SharedAccessKey"]}
	for _, k := range serviceKeys {
		if err := require(k, m[k]); err != nil {
			return Service{}, err
		}
	}
	if err := checkHost("HostName", svc.HostName); err != nil {
		return Service{}, err
	}
	return svc, checkKey(svc.SharedAccessKey)
}

// String formats s.
func (s Service) String() string {
	return join([][2]string{{"HostName", s.HostName}, {"SharedAccessKeyName", s.SharedAccessKeyName}, {"SharedAccessKey", s.SharedAccessKey}})
}

func split(s string, allowed []string) (map[string]string, error) {
	m := map[string]string{}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("connection string: empty")
	}
	for _, pair := range strings.Split(strings.TrimSuffix(s, ";"), ";") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("connection string: %q is not a key=value pair", pair)
		}
		if !contains(allowed, k) {
			return nil, fmt.Errorf("connection string: unknown key %q (keys are case-sensitive: %s)", k, strings.Join(allowed, ", "))
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("connection string: key %q appears twice", k)
		}
		m[k] = v
	}
	return m, nil
}

func require(key, v string) error {
	if v == "" {
		return fmt.Errorf("connection string: missing %s", key)
	}
	return nil
}

// checkHost accepts a host name with an optional port; the name must not
// contain '/', ';', whitespace or a scheme.
func checkHost(key, h string) error {
	host := h
	if hh, port, err := net.SplitHostPort(h); err == nil {
		host = hh
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("connection string: %s %q is not a host name with a numeric port", key, h)
		}
	}
	if host == "" || strings.ContainsAny(host, "/;@ \t") {
		return fmt.Errorf("connection string: %s %q is not a host name", key, h)
	}
	return nil
}

func checkKey(k string) error {
	if _, err := base64.StdEncoding.DecodeString(k); err != nil {
		return fmt.Errorf("connection string: SharedAccessKey is not valid base64")
	}
	return nil
}

func join(pairs [][2]string) string {
	var parts []string
	for _, p := range pairs {
		if p[1] != "" {
			parts = append(parts, p[0]+"="+p[1])
		}
	}
	return strings.Join(parts, ";")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
