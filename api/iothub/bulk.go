package iothub

import (
	"encoding/json"
	"strings"
)

// MaxBulkDevices is the most entries one bulk registry request may hold
// (service-api §3.7).
const MaxBulkDevices = 100

// ImportMode says what a bulk registry entry does (service-api §3.7).
type ImportMode string

// Import modes, as documented for ExportImportDevice.
const (
	ImportCreate                    ImportMode = "create"
	ImportCreateOrUpdate            ImportMode = "createOrUpdate"
	ImportCreateOrUpdateIfMatchETag ImportMode = "createOrUpdateIfMatchETag"
	ImportUpdate                    ImportMode = "update"
	ImportUpdateIfMatchETag         ImportMode = "updateIfMatchETag"
	ImportDelete                    ImportMode = "delete"
	ImportDeleteIfMatchETag         ImportMode = "deleteIfMatchETag"
	ImportUpdateTwin                ImportMode = "updateTwin"
	ImportUpdateTwinIfMatchETag     ImportMode = "updateTwinIfMatchETag"
)

var importModes = []ImportMode{ImportCreate, ImportCreateOrUpdate, ImportCreateOrUpdateIfMatchETag,
	ImportUpdate, ImportUpdateIfMatchETag, ImportDelete, ImportDeleteIfMatchETag,
	ImportUpdateTwin, ImportUpdateTwinIfMatchETag}

// ParseImportMode accepts a mode in any letter case: the hub parses it as
// a .NET enum, and the Node SDK sends "Update" and "DeleteIfMatchETag".
func ParseImportMode(s string) (ImportMode, bool) {
	for _, m := range importModes {
		if strings.EqualFold(s, string(m)) {
			return m, true
		}
	}
	return "", false
}

// MatchesETag reports whether the mode applies only on an etag match.
func (m ImportMode) MatchesETag() bool { return strings.HasSuffix(string(m), "IfMatchETag") }

// ExportImportDevice is one entry of POST /devices (service-api §3.7). Its
// id field is "id", not "deviceId"; field names match in any letter case,
// as on the hub, so the "etag" the Node SDK copies from a device works.
type ExportImportDevice struct {
	ID             string                `json:"id"`
	ModuleID       string                `json:"moduleId,omitempty"`
	ETag           string                `json:"eTag,omitempty"`
	ImportMode     ImportMode            `json:"importMode,omitempty"`
	Status         DeviceStatus          `json:"status,omitempty"`
	StatusReason   *string               `json:"statusReason,omitempty"`
	Authentication *Authentication       `json:"authentication,omitempty"`
	TwinETag       string                `json:"twinETag,omitempty"`
	Tags           map[string]any        `json:"tags,omitempty"`
	Properties     *ImportTwinProperties `json:"properties,omitempty"`
	Capabilities   *Capabilities         `json:"capabilities,omitempty"`
}

// ImportTwinProperties are the twin sections of a bulk entry.
type ImportTwinProperties struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// BulkResult answers a bulk registry request: 200 when every entry was
// applied, else 400 BulkRegistryOperationFailure with an error per failed
// entry (service-api §3.7).
type BulkResult struct {
	IsSuccessful bool          `json:"isSuccessful"`
	Errors       []BulkError   `json:"errors"`
	Warnings     []BulkWarning `json:"warnings"`
}

// BulkError is the failure of one entry; ErrorCode is the error's name.
type BulkError struct {
	DeviceID    string  `json:"deviceId"`
	ModuleID    *string `json:"moduleId"`
	ErrorCode   string  `json:"errorCode"`
	ErrorStatus string  `json:"errorStatus"`
}

// BulkWarning is a warning about one entry.
type BulkWarning struct {
	DeviceID      string `json:"deviceId"`
	WarningCode   string `json:"warningCode"`
	WarningStatus string `json:"warningStatus"`
}

// UnmarshalJSON reads an import mode in any letter case and refuses
// unknown ones.
func (m *ImportMode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, ok := ParseImportMode(s)
	if !ok {
		return Errorf(ArgumentInvalid, "unknown importMode %q", s)
	}
	*m = v
	return nil
}
