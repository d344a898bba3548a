// Package cafile reads the PEM CA file the clients trust instead of the
// system roots (the emulator's ca.pem).
package cafile

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Pool reads file into a certificate pool. It fails if the file holds no
// PEM certificate, so a wrong path is not silently the system roots.
func Pool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
