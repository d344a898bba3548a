package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// FileStore is the storage account file uploads go to (next-wave-protocols
// §4). The hub names blobs and keeps the uploads; the store signs and
// reads.
type FileStore interface {
	// HostName and Container are what a SAS response names.
	HostName() string
	Container() string
	// SAS signs a write-and-read SAS for blob, valid for ttl, starting
	// with '?'.
	SAS(ctx context.Context, blob string, ttl time.Duration) (string, error)
	// Stat reads an uploaded blob's size and last modification.
	Stat(ctx context.Context, blob string) (int64, time.Time, error)
	// BlobURL is a blob's URL without a SAS.
	BlobURL(blob string) string
}

// fileState holds the uploads devices have begun and the notifications
// waiting for the service. Both live in memory.
type fileState struct {
	mu            sync.Mutex
	pending       map[string]pendingUpload  // guarded by mu; by correlation id
	notifications []iothub.FileNotification // guarded by mu; oldest first
	ready         chan struct{}             // guarded by mu; closed when a notification arrives
}

type pendingUpload struct {
	key, blob string
	expires   time.Time
}

// maxFileNotifications bounds the notifications waiting for a receiver.
const maxFileNotifications = 10000

var errNoStorage = iothub.Errorf(iothub.ArgumentInvalid, "file upload is not configured: start the emulator with -storage-connection-string (a hub's file upload settings)")

// CreateFileUpload begins an upload of blobName for identity key (POST
// /devices/{id}/files): the blob is {deviceId}/{blobName}, and the answer
// carries a SAS valid for Options.FileUploadSASTTL. A device has at most
// ten uploads it has not reported.
func (h *Hub) CreateFileUpload(ctx context.Context, key, blobName string) (iothub.FileUploadSAS, error) {
	e, err := h.entry(key)
	if err != nil {
		return iothub.FileUploadSAS{}, err
	}
	if err := h.deviceEnabled(e); err != nil {
		return iothub.FileUploadSAS{}, err
	}
	if h.opts.Files == nil {
		return iothub.FileUploadSAS{}, errNoStorage
	}
	if blobName == "" || len(blobName) > 1024 || strings.HasSuffix(blobName, "/") || strings.HasSuffix(blobName, ".") {
		return iothub.FileUploadSAS{}, iothub.Errorf(iothub.ArgumentInvalid, "blobName %q is not a valid blob name", blobName)
	}
	now := h.now()
	f := &h.files
	f.mu.Lock()
	n := 0
	for cid, p := range f.pending {
		switch {
		case !now.Before(p.expires):
			delete(f.pending, cid)
		case p.key == key:
			n++
		}
	}
	f.mu.Unlock()
	if n >= iothub.MaxPendingFileUploads {
		return iothub.FileUploadSAS{}, iothub.Errorf(iothub.ThrottlingException, "device %s has %d file uploads it has not reported; the limit is %d", key, n, iothub.MaxPendingFileUploads)
	}
	blob := e.rec.Load().Device.DeviceID + "/" + blobName
	token, err := h.opts.Files.SAS(ctx, blob, h.opts.FileUploadSASTTL)
	if err != nil {
		h.log.Error("file upload SAS not signed", "device", key, "error", err)
		return iothub.FileUploadSAS{}, iothub.Errorf(iothub.ServerError, "the storage account could not be reached")
	}
	var id [24]byte
	_, _ = rand.Read(id[:])
	cid := base64.StdEncoding.EncodeToString(id[:])
	f.mu.Lock()
	if f.pending == nil {
		f.pending = map[string]pendingUpload{}
	}
	f.pending[cid] = pendingUpload{key: key, blob: blob, expires: now.Add(h.opts.FileUploadSASTTL)}
	f.mu.Unlock()
	return iothub.FileUploadSAS{CorrelationID: cid, HostName: h.opts.Files.HostName(), ContainerName: h.opts.Files.Container(),
		BlobName: blob, SASToken: token}, nil
}

// CompleteFileUpload records how an upload of identity key went (POST
// /devices/{id}/files/notifications). A successful one becomes a file
// notification for the service, unless Options.NoFileNotifications.
func (h *Hub) CompleteFileUpload(ctx context.Context, key string, st iothub.FileUploadStatus) error {
	f := &h.files
	f.mu.Lock()
	p, ok := f.pending[st.CorrelationID]
	if ok && strings.EqualFold(p.key, key) {
		delete(f.pending, st.CorrelationID)
	}
	f.mu.Unlock()
	if !ok || !strings.EqualFold(p.key, key) {
		return iothub.Errorf(iothub.ArgumentInvalid, "no file upload of %s has the correlation id %q", key, st.CorrelationID)
	}
	if !st.IsSuccess || h.opts.NoFileNotifications || h.opts.Files == nil {
		return nil
	}
	now := h.now()
	size, modified, err := h.opts.Files.Stat(ctx, p.blob)
	if err != nil {
		h.log.Warn("uploaded blob not read", "device", key, "blob", p.blob, "error", err)
		modified = now
	}
	deviceID, _, _ := strings.Cut(p.key, "/")
	n := iothub.FileNotification{DeviceID: deviceID, BlobURI: h.opts.Files.BlobURL(p.blob), BlobName: p.blob,
		LastUpdatedTime: iothub.NewTime(modified), BlobSizeInBytes: size, EnqueuedTimeUTC: iothub.NewTime(now)}
	f.mu.Lock()
	f.notifications = append(f.notifications, n)
	if len(f.notifications) > maxFileNotifications {
		f.notifications = f.notifications[len(f.notifications)-maxFileNotifications:]
	}
	if f.ready != nil {
		close(f.ready)
		f.ready = nil
	}
	f.mu.Unlock()
	h.log.Info("file uploaded", "device", key, "blob", p.blob, "bytes", size)
	return nil
}

// NextFileNotification takes the oldest file notification, waiting for
// one until ctx ends. A receiver that does not complete it gives it back
// with ReturnFileNotification.
func (h *Hub) NextFileNotification(ctx context.Context) (iothub.FileNotification, error) {
	f := &h.files
	for {
		f.mu.Lock()
		if len(f.notifications) > 0 {
			n := f.notifications[0]
			f.notifications = f.notifications[1:]
			f.mu.Unlock()
			return n, nil
		}
		if f.ready == nil {
			f.ready = make(chan struct{})
		}
		ready := f.ready
		f.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return iothub.FileNotification{}, ctx.Err()
		}
	}
}

// ReturnFileNotification puts back a notification its receiver
// abandoned: it is the next one taken.
func (h *Hub) ReturnFileNotification(n iothub.FileNotification) {
	f := &h.files
	f.mu.Lock()
	f.notifications = append([]iothub.FileNotification{n}, f.notifications...)
	if f.ready != nil {
		close(f.ready)
		f.ready = nil
	}
	f.mu.Unlock()
}
