package iothub

// File upload (next-wave-protocols §4): a device asks for a SAS URI,
// writes the blob to the hub's storage account itself, and tells the hub
// how it went; the service hears of successful uploads on its file
// notification receiver.

// FileUploadRequest is the body of POST /devices/{id}/files.
type FileUploadRequest struct {
	BlobName string `json:"blobName"`
}

// FileUploadSAS answers it. The blob's URL is
// https://{HostName}/{ContainerName}/{BlobName}{SASToken}: the SDKs
// concatenate, so HostName may carry a path (Azurite's path-style
// account), and SASToken starts with '?'.
type FileUploadSAS struct {
	CorrelationID string `json:"correlationId"`
	HostName      string `json:"hostName"`
	ContainerName string `json:"containerName"`
	BlobName      string `json:"blobName"`
	SASToken      string `json:"sasToken"`
}

// FileUploadStatus is the body of POST /devices/{id}/files/notifications
// (the correlation id may instead be in the path, as Node sends it).
type FileUploadStatus struct {
	CorrelationID     string `json:"correlationId,omitempty"`
	IsSuccess         bool   `json:"isSuccess"`
	StatusCode        int    `json:"statusCode"`
	StatusDescription string `json:"statusDescription"`
}

// FileNotification is what the service's file notification receiver
// gets for a successful upload.
type FileNotification struct {
	DeviceID        string `json:"deviceId"`
	BlobURI         string `json:"blobUri"`
	BlobName        string `json:"blobName"`
	LastUpdatedTime Time   `json:"lastUpdatedTime"`
	BlobSizeInBytes int64  `json:"blobSizeInBytes"`
	EnqueuedTimeUTC Time   `json:"enqueuedTimeUtc"`
}

// FileNotificationContentType is a file notification's content type;
// the C# service client refuses any other.
const FileNotificationContentType = "application/vnd.microsoft.iothub.filenotification.json"

// MaxPendingFileUploads bounds the uploads a device has begun and not
// reported.
const MaxPendingFileUploads = 10
