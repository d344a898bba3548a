package iothub

import "strings"

// DeviceStatus is an identity's status, in lower case on the wire
// (service-api §3.1).
type DeviceStatus string

// Device statuses.
const (
	StatusEnabled  DeviceStatus = "enabled"
	StatusDisabled DeviceStatus = "disabled"
)

// ConnectionState is whether a device is connected, capitalised on the wire
// (service-api §3.1).
type ConnectionState string

// Connection states.
const (
	Connected    ConnectionState = "Connected"
	Disconnected ConnectionState = "Disconnected"
)

// AuthType is how an identity authenticates (service-api §3.1).
type AuthType string

// Authentication types.
const (
	AuthSAS                  AuthType = "sas"
	AuthSelfSigned           AuthType = "selfSigned"
	AuthCertificateAuthority AuthType = "certificateAuthority"
	AuthNone                 AuthType = "none"
)

// Device is a device identity in the registry (service-api §3.1).
type Device struct {
	DeviceID                   string          `json:"deviceId"`
	GenerationID               string          `json:"generationId"`
	ETag                       string          `json:"etag"`
	ConnectionState            ConnectionState `json:"connectionState"`
	Status                     DeviceStatus    `json:"status"`
	StatusReason               *string         `json:"statusReason"`
	ConnectionStateUpdatedTime Time            `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          Time            `json:"statusUpdatedTime"`
	LastActivityTime           Time            `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication  `json:"authentication"`
	Capabilities               Capabilities    `json:"capabilities"`
	// DeviceScope is an IoT Edge device's own scope, or the scope of the
	// edge device a leaf device is the child of; ParentScopes names the
	// parent's scope (service-api §3.1).
	DeviceScope  string   `json:"deviceScope,omitempty"`
	ParentScopes []string `json:"parentScopes,omitempty"`
}

// EdgeScopePrefix starts every IoT Edge device scope.
const EdgeScopePrefix = "ms-azure-iot-edge://"

// MaxEdgeDepth is how many layers of IoT Edge devices a hierarchy may
// have (nested edge: up to five).
const MaxEdgeDepth = 5

// EdgeScope is the scope the hub gives an IoT Edge device:
// ms-azure-iot-edge://{deviceId}-{generationId}.
func EdgeScope(deviceID, generationID string) string {
	return EdgeScopePrefix + deviceID + "-" + generationID
}

// ParseEdgeScope reads the device id and generation id out of an edge
// scope; the generation id is the digits after the last '-'.
func ParseEdgeScope(scope string) (deviceID, generationID string, ok bool) {
	rest, found := strings.CutPrefix(scope, EdgeScopePrefix)
	i := strings.LastIndexByte(rest, '-')
	if !found || i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	for _, c := range rest[i+1:] {
		if c < '0' || c > '9' {
			return "", "", false
		}
	}
	return rest[:i], rest[i+1:], true
}

// Module is a module identity on a device (service-api §3.8). Modules have
// no status of their own.
type Module struct {
	ModuleID                   string          `json:"moduleId"`
	ManagedBy                  string          `json:"managedBy"`
	DeviceID                   string          `json:"deviceId"`
	GenerationID               string          `json:"generationId"`
	ETag                       string          `json:"etag"`
	ConnectionState            ConnectionState `json:"connectionState"`
	ConnectionStateUpdatedTime Time            `json:"connectionStateUpdatedTime"`
	LastActivityTime           Time            `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication  `json:"authentication"`
}

// Authentication holds an identity's credentials.
type Authentication struct {
	SymmetricKey   SymmetricKey   `json:"symmetricKey"`
	X509Thumbprint X509Thumbprint `json:"x509Thumbprint"`
	Type           AuthType       `json:"type"`
}

// SymmetricKey is the pair of base64 keys of a SAS identity. Empty keys in a
// create request ask the hub to generate them (service-api §3.3).
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// X509Thumbprint holds the thumbprints of a self-signed identity.
type X509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

// Capabilities lists what a device can do.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// MaxIDLength is the longest device or module id the hub accepts.
const MaxIDLength = 128

// ValidID reports whether id is a valid device or module id: 1–128 ASCII
// letters, digits or one of - : . + % _ # * ? ! ( ) , = @ ; $ '
// (service-api §3.2).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case containsByte("-:.+%_#*?!(),=@;$'", c):
		default:
			return false
		}
	}
	return true
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// RegistryStatistics is the body of GET /statistics/devices (service-api §3.9).
type RegistryStatistics struct {
	TotalDeviceCount    int `json:"totalDeviceCount"`
	EnabledDeviceCount  int `json:"enabledDeviceCount"`
	DisabledDeviceCount int `json:"disabledDeviceCount"`
}

// ServiceStatistics is the body of GET /statistics/service (service-api §3.9).
type ServiceStatistics struct {
	ConnectedDeviceCount int `json:"connectedDeviceCount"`
}
