package iothub

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
