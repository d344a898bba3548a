package emulatortest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/blobstore"
	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

const (
	uploadDevices = 20
	uploadSize    = 1 << 20
)

// BenchmarkFileUpload measures uploads of 1 MiB files by 20 devices
// through the hub's file upload (SAS URI, Put Blob to Azurite,
// notification), beside the same Put Blobs straight to Azurite with a
// SAS signed beforehand. Azurite comes from conformance/node_modules
// (make bench installs it); without it the benchmark is skipped.
func BenchmarkFileUpload(b *testing.B) {
	azurite, err := filepath.Abs("../../conformance/node_modules/.bin/azurite-blob")
	if err == nil {
		_, err = os.Stat(azurite)
	}
	if err != nil {
		b.Skipf("no Azurite (%v): run .ci/node-deps", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := b.TempDir()
	storage := fmt.Sprintf("DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=https://127.0.0.1:%d/devstoreaccount1;", port)
	e := emulatortest.Start(b, emulatortest.WithDataDir(dir), emulatortest.WithNoSync(),
		emulatortest.WithConfig(func(c *server.Config) { c.StorageConnectionString = storage }))
	cmd := exec.Command(azurite, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--cert", filepath.Join(dir, "server.pem"), "--key", filepath.Join(dir, "server-key.pem"), "--skipApiVersionCheck", "--loose", "--silent", "--inMemoryPersistence")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("Azurite did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	payload := make([]byte, uploadSize)
	rand.Read(payload)
	ctx := context.Background()

	scs, _ := connstr.ParseStorage(storage)
	store, err := blobstore.New(scs, "fileuploads", e.CAPEM(), nil)
	if err != nil {
		b.Fatal(err)
	}
	hc := e.HTTPClient()
	var direct, hub []func(int) error
	for i := range uploadDevices {
		id := fmt.Sprintf("up-%d", i)
		dev := e.Dial(b, e.TransportString(e.AddDevice(b, id), iotdevice.HTTPS), iotdevice.Options{Transport: iotdevice.HTTPS, HTTPSHost: e.HTTPSAddr()})
		blob := id + "/direct.bin"
		sas, err := store.SAS(ctx, blob, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		url := store.BlobURL(blob) + sas
		direct = append(direct, func(n int) error {
			for range n {
				if err := putBlob(ctx, hc, url, payload); err != nil {
					return err
				}
			}
			return nil
		})
		hub = append(hub, func(n int) error {
			for j := range n {
				if _, err := dev.UploadFile(ctx, fmt.Sprintf("f-%d.bin", j%8), bytes.NewReader(payload), uploadSize); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.Run("reference-azurite-put-blob", func(b *testing.B) { runUploads(b, direct) })
	b.Run("hub-file-upload", func(b *testing.B) { runUploads(b, hub) })
}

func putBlob(ctx context.Context, hc *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("x-ms-blob-type", "BlockBlob")
	req.Header.Set("x-ms-version", "2021-08-06")
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("put blob: %s", res.Status)
	}
	return nil
}

func runUploads(b *testing.B, senders []func(int) error) {
	b.SetBytes(uploadSize)
	runSpread(b, senders, "uploads/s")
}
