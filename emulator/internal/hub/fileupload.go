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

// fileState holds the uploads devices have begun, in memory; the
// notifications waiting for the service are the durable h.fileNotes.
type fileState struct {
	mu      sync.Mutex
	pending map[string]pendingUpload // guarded by mu; by correlation id
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
	if err := h.Admit(ctx, iothub.OpFileUpload, key, 0); err != nil {
		return iothub.FileUploadSAS{}, err
	}
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
	// URL-safe, so no SDK's escaping of the notification path can change it.
	cid := base64.RawURLEncoding.EncodeToString(id[:])
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
	if err := h.fileNotes.push(n); err != nil {
		h.log.Error("file notification not stored", "device", key, "error", err)
		return iothub.Errorf(iothub.ServerError, "the notification could not be stored")
	}
	h.log.Info("file uploaded", "device", key, "blob", p.blob, "bytes", size)
	return nil
}

// NextFileNotification takes the oldest file notification, waiting for
// one until ctx ends. The caller settles it: accepted deletes it,
// otherwise it is taken again first.
func (h *Hub) NextFileNotification(ctx context.Context) (iothub.FileNotification, func(accepted bool), error) {
	ns, settle, err := h.fileNotes.take(ctx, 1)
	if err != nil {
		return iothub.FileNotification{}, nil, err
	}
	return ns[0], settle, nil
}
