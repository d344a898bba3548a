package emulatortest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// blobService is the part of the Blob service a file upload reaches:
// create the container, Put Blob, Get Blob Properties. It checks that a
// blob write carries a SAS.
type blobService struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func (b *blobService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case r.Method == http.MethodPut && r.URL.Query().Get("restype") == "container":
		w.WriteHeader(http.StatusCreated)
	case strings.Contains(r.URL.Path, "denied"):
		w.WriteHeader(http.StatusForbidden)
	case r.Method == http.MethodPut && r.URL.Query().Get("sig") != "" && r.Header.Get("x-ms-blob-type") == "BlockBlob":
		body, _ := io.ReadAll(r.Body)
		b.blobs[r.URL.Path] = body
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodHead:
		body, ok := b.blobs[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusForbidden)
	}
}

// Ensure that the project's device client uploads a file as the SDKs do:
// a SAS from the hub, the blob written to the storage account with it,
// the outcome reported; the service's file notification names the blob
// with its size, and a refused write is reported as failed.
func TestUploadFile(t *testing.T) {
	dir := t.TempDir()
	emulatortest.Start(t, emulatortest.WithDataDir(dir)).Close() // makes the certificates
	blobs := &blobService{blobs: map[string][]byte{}}
	srv := httptest.NewUnstartedServer(blobs)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	account := "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=" + connstr.DevStorageKey +
		";BlobEndpoint=" + srv.URL + "/devstoreaccount1"
	e := emulatortest.Start(t, emulatortest.WithDataDir(dir), emulatortest.WithConfig(func(c *server.Config) { c.StorageConnectionString = account }))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dev := e.Dial(t, e.AddDevice(t, "uploader"), iotdevice.Options{HTTPSHost: e.HTTPSAddr()})
	data := bytes.Repeat([]byte("log line\n"), 1000)
	name, err := dev.UploadFile(ctx, "logs/today.log", bytes.NewReader(data), int64(len(data)))
	if err != nil || name != "uploader/logs/today.log" {
		t.Fatalf("upload: %q, %v", name, err)
	}
	if got := blobs.blobs["/devstoreaccount1/fileuploads/uploader/logs/today.log"]; !bytes.Equal(got, data) {
		t.Fatalf("the storage account holds %d bytes", len(got))
	}
	// The service hears of it on its file notification receiver.
	var got []iothub.FileNotification
	err = e.Service(t).ReceiveFileNotifications(ctx, func(n iothub.FileNotification) error {
		got = append(got, n)
		return iotservice.ErrStop
	})
	if err != nil || len(got) != 1 || got[0].BlobName != name || got[0].BlobSizeInBytes != int64(len(data)) || !strings.HasSuffix(got[0].BlobURI, "/fileuploads/"+name) {
		t.Fatalf("notifications %+v, %v", got, err)
	}
	// A write the storage account refuses is reported as failed, and gives
	// no notification.
	if _, err := dev.UploadFile(ctx, "denied.log", bytes.NewReader(data), int64(len(data))); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a refused write: %v", err)
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if n, _, err := e.Hub().NextFileNotification(short); err == nil {
		t.Fatalf("a failed upload gave a notification: %+v", n)
	}
}
