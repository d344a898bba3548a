// Package blobstore is a container of the storage account IoT Hub's file
// uploads go to (next-wave-protocols §4), with Microsoft's azblob client:
// the hub's side signs the service SAS a device writes its blob with,
// creates the container and reads what was uploaded; a back end's side
// downloads the blob a file notification names. It is the one home of
// azblob (.ci/deps). The account is Azure's or Azurite's; its TLS
// certificate is trusted if the system or the given pool trusts it.
package blobstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
)

// Store is a container of a storage account.
type Store struct {
	account   connstr.Storage
	container string
	cred      *azblob.SharedKeyCredential
	client    *container.Client
	now       func() time.Time

	once    sync.Mutex
	created bool // guarded by once: the container exists
}

// New returns the store of container in the account of cs. The
// certificates of caPEM, if any, are trusted besides the system's (the
// emulator's CA, which signs Azurite's certificate in the demo and the
// tests).
func New(cs connstr.Storage, containerName string, caPEM []byte, now func() time.Time) (*Store, error) {
	cred, err := azblob.NewSharedKeyCredential(cs.AccountName, cs.AccountKey)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pool.AppendCertsFromPEM(caPEM)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		Retry: policy.RetryOptions{MaxRetries: 1}}}
	c, err := container.NewClientWithSharedKeyCredential(cs.BlobEndpoint.String()+"/"+url.PathEscape(containerName), cred, opts)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{account: cs, container: containerName, cred: cred, client: c, now: now}, nil
}

// HostName is the account's blob endpoint as a SAS response names it.
func (s *Store) HostName() string { return s.account.BlobHost() }

// Container is the container uploads go to.
func (s *Store) Container() string { return s.container }

// BlobURL is the https URL of a blob, without a SAS.
func (s *Store) BlobURL(blob string) string {
	return "https://" + s.HostName() + "/" + s.container + "/" + blob
}

// SAS signs a service SAS for writing and reading blob until ttl from
// now, and returns it with its leading '?', as IoT Hub answers it.
func (s *Store) SAS(ctx context.Context, blob string, ttl time.Duration) (string, error) {
	if err := s.ensureContainer(ctx); err != nil {
		return "", err
	}
	q, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPS,
		StartTime:     s.now().Add(-5 * time.Minute).UTC(),
		ExpiryTime:    s.now().Add(ttl).UTC(),
		Permissions:   (&sas.BlobPermissions{Read: true, Create: true, Write: true}).String(),
		ContainerName: s.container,
		BlobName:      blob,
	}.SignWithSharedKey(s.cred)
	if err != nil {
		return "", fmt.Errorf("storage: sign: %w", err)
	}
	return "?" + q.Encode(), nil
}

// ensureContainer creates the container once, when the first upload
// needs it, so the storage account may start after the emulator.
func (s *Store) ensureContainer(ctx context.Context) error {
	s.once.Lock()
	defer s.once.Unlock()
	if s.created {
		return nil
	}
	_, err := s.client.Create(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("storage: create container %s: %w", s.container, err)
	}
	s.created = true
	return nil
}

// Stat reads a blob's size and last modification.
func (s *Store) Stat(ctx context.Context, blob string) (size int64, modified time.Time, err error) {
	p, err := s.client.NewBlobClient(blob).GetProperties(ctx, nil)
	if err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return 0, time.Time{}, fmt.Errorf("storage: blob %s does not exist", blob)
		}
		return 0, time.Time{}, fmt.Errorf("storage: %w", err)
	}
	if p.ContentLength != nil {
		size = *p.ContentLength
	}
	if p.LastModified != nil {
		modified = *p.LastModified
	}
	return size, modified, nil
}

// Download writes a blob's content to w and returns its size.
func (s *Store) Download(ctx context.Context, blob string, w io.Writer) (int64, error) {
	res, err := s.client.NewBlobClient(blob).DownloadStream(ctx, nil)
	if err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return 0, fmt.Errorf("storage: blob %s does not exist", blob)
		}
		return 0, fmt.Errorf("storage: %w", err)
	}
	defer res.Body.Close()
	n, err := io.Copy(w, res.Body)
	if err != nil {
		return n, fmt.Errorf("storage: download %s: %w", blob, err)
	}
	return n, nil
}

// ValidBlobName reports whether name may name a blob: 1 to 1,024
// characters, not ending with '.' or '/'.
func ValidBlobName(name string) bool {
	return name != "" && len(name) <= 1024 && !strings.HasSuffix(name, ".") && !strings.HasSuffix(name, "/")
}
