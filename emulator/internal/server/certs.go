package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Certificate files in the data directory.
const (
	CAFile        = "ca.pem"
	caKeyFile     = "ca-key.pem"
	serverFile    = "server.pem"
	serverKeyFile = "server-key.pem"
)

// caLifetime is how long a new CA is valid. Users trust it machine-wide,
// so it is short, and it may sign only the names the emulator serves.
const caLifetime = 398 * 24 * time.Hour

// loadOrCreateCA returns the CA in dir. A CA is created on first start,
// and again when the one there may not sign every name in names (its
// name constraints were made for other names) or expires within 30 days;
// renewed says so, as users must trust the new one.
func loadOrCreateCA(dir string, names []string) (cert *x509.Certificate, key *ecdsa.PrivateKey, certPEM []byte, renewed bool, err error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, caKeyFile)
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		cert, key, err := parsePair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, nil, false, fmt.Errorf("read CA in %s: %w", dir, err)
		}
		if constrainedTo(cert, names) && time.Until(cert.NotAfter) > 30*24*time.Hour {
			return cert, key, certPEM, false, nil
		}
		renewed = true
	} else if !errors.Is(err1, os.ErrNotExist) && err1 != nil {
		return nil, nil, nil, false, err1
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "IoT Hub emulator local CA", Organization: []string{"IoT Hub emulator"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// Only the emulator's own names: a certificate this CA signed for
		// any other name (login.microsoftonline.com, say) does not verify.
		PermittedDNSDomainsCritical: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
		} else {
			tmpl.PermittedDNSDomains = append(tmpl.PermittedDNSDomains, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, false, err
	}
	cert, _ = x509.ParseCertificate(der)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, nil, nil, false, err
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, nil, nil, false, err
	}
	// The server certificate the old CA signed must go.
	os.Remove(filepath.Join(dir, serverFile))
	return cert, key, certPEM, renewed, nil
}

// constrainedTo reports whether the CA carries name constraints and they
// permit every name in names.
func constrainedTo(ca *x509.Certificate, names []string) bool {
	if !ca.PermittedDNSDomainsCritical || (len(ca.PermittedDNSDomains) == 0 && len(ca.PermittedIPRanges) == 0) {
		return false
	}
	for _, n := range names {
		ok := false
		if ip := net.ParseIP(n); ip != nil {
			for _, r := range ca.PermittedIPRanges {
				ok = ok || r.Contains(ip)
			}
		} else {
			for _, d := range ca.PermittedDNSDomains {
				ok = ok || strings.EqualFold(d, n) || strings.HasSuffix(strings.ToLower(n), "."+strings.ToLower(d))
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadOrCreateServerCert returns the server certificate in dir if the CA
// signed it, it names exactly names and it is valid for another week;
// otherwise it issues and stores a new one.
func loadOrCreateServerCert(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string) (tls.Certificate, error) {
	certPEM, err1 := os.ReadFile(filepath.Join(dir, serverFile))
	keyPEM, err2 := os.ReadFile(filepath.Join(dir, serverKeyFile))
	if err1 == nil && err2 == nil {
		if cert, key, err := parsePair(certPEM, keyPEM); err == nil && reusable(cert, ca, names) {
			return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Raw}, PrivateKey: key, Leaf: cert}, nil
		}
	}
	c, err := serverCert(ca, caKey, names)
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, _ := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err := os.WriteFile(filepath.Join(dir, serverKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, serverFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return c, nil
}

// reusable reports whether cert was signed by ca, names exactly names and
// stays valid for at least a week.
func reusable(cert, ca *x509.Certificate, names []string) bool {
	if cert.CheckSignatureFrom(ca) != nil || time.Until(cert.NotAfter) < 7*24*time.Hour {
		return false
	}
	var have []string
	have = append(have, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	if len(have) != len(names) {
		return false
	}
	for _, n := range names {
		found := false
		for _, h := range have {
			if h == n || (net.ParseIP(n) != nil && net.ParseIP(n).Equal(net.ParseIP(h))) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// serverCert issues a server certificate from the CA for names (DNS names
// or IP addresses).
func serverCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// loadCAFiles reads the certificates of files into a pool, or returns nil
// for no files.
func loadCAFiles(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("X.509 CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("X.509 CA file %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}
