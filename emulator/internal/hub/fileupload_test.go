package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// memStore is a storage account in memory: SAS tokens name the blob.
type memStore struct{ sizes map[string]int64 }

func (m *memStore) HostName() string  { return "127.0.0.1:10000/devstoreaccount1" }
func (m *memStore) Container() string { return "uploads" }
func (m *memStore) SAS(_ context.Context, blob string, ttl time.Duration) (string, error) {
	return fmt.Sprintf("?sig=%s&ttl=%s", blob, ttl), nil
}
func (m *memStore) Stat(_ context.Context, blob string) (int64, time.Time, error) {
	return m.sizes[blob], time.Unix(1700000000, 0), nil
}
func (m *memStore) BlobURL(blob string) string { return "https://" + m.HostName() + "/uploads/" + blob }

// Ensure IoT Hub's file upload rules: the blob is named under the device,
// the answer carries the store's host, container and SAS; a success
// reported by correlation id becomes one notification with the blob's
// size, a failure none; an unknown or another device's correlation id is
// refused; a device has at most ten uploads open; an abandoned
// notification is the next one taken; without storage, uploads are an
// error.
func TestFileUpload(t *testing.T) {
	store := &memStore{sizes: map[string]int64{"d1/logs/a.txt": 42}}
	h := mustOpen(t, hub.Options{Files: store})
	mustDevice(t, h, "d1")
	mustDevice(t, h, "d2")
	sas, err := h.CreateFileUpload(ctx, "d1", "logs/a.txt")
	if err != nil || sas.BlobName != "d1/logs/a.txt" || sas.ContainerName != "uploads" || sas.HostName != store.HostName() ||
		sas.SASToken != "?sig=d1/logs/a.txt&ttl=1h0m0s" || sas.CorrelationID == "" {
		t.Fatalf("%+v, %v", sas, err)
	}
	if err := h.CompleteFileUpload(ctx, "d2", iothub.FileUploadStatus{CorrelationID: sas.CorrelationID, IsSuccess: true}); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Errorf("another device's correlation id: %v", err)
	}
	failed, _ := h.CreateFileUpload(ctx, "d1", "b.txt")
	if err := h.CompleteFileUpload(ctx, "d1", iothub.FileUploadStatus{CorrelationID: failed.CorrelationID, IsSuccess: false, StatusCode: 500}); err != nil {
		t.Fatal(err)
	}
	if err := h.CompleteFileUpload(ctx, "d1", iothub.FileUploadStatus{CorrelationID: sas.CorrelationID, IsSuccess: true, StatusCode: 201}); err != nil {
		t.Fatal(err)
	}
	if err := h.CompleteFileUpload(ctx, "d1", iothub.FileUploadStatus{CorrelationID: sas.CorrelationID, IsSuccess: true}); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Errorf("a second report: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	n, settle, err := h.NextFileNotification(tctx)
	if err != nil || n.DeviceID != "d1" || n.BlobName != "d1/logs/a.txt" || n.BlobSizeInBytes != 42 || n.BlobURI != store.BlobURL("d1/logs/a.txt") {
		t.Fatalf("notification %+v, %v", n, err)
	}
	settle(false) // abandoned: it is the next one taken, after a restart too
	h.reopen(t)
	again, settle, err := h.NextFileNotification(tctx)
	if err != nil || jsonOf(again) != jsonOf(n) {
		t.Fatalf("the abandoned notification came back as %+v, %v", again, err)
	}
	settle(true)
	h.reopen(t)
	short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
	defer stop()
	if extra, _, err := h.NextFileNotification(short); err == nil {
		t.Errorf("an accepted notification, or the failed upload's, came back: %+v", extra)
	}
	for i := range iothub.MaxPendingFileUploads {
		if _, err := h.CreateFileUpload(ctx, "d2", fmt.Sprintf("f%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.CreateFileUpload(ctx, "d2", "one-too-many"); iothub.CodeOf(err) != iothub.ThrottlingException {
		t.Errorf("an eleventh open upload: %v", err)
	}
	for _, bad := range []string{"", "dir/", "x."} {
		if _, err := h.CreateFileUpload(ctx, "d1", bad); iothub.CodeOf(err) != iothub.ArgumentInvalid {
			t.Errorf("blob name %q: %v", bad, err)
		}
	}
	none := mustOpen(t, hub.Options{})
	mustDevice(t, none, "d1")
	if _, err := none.CreateFileUpload(ctx, "d1", "a.txt"); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Errorf("without storage: %v", err)
	}
}
