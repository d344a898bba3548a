package iothub

// QuerySpec is the body of POST /devices/query (service-api §6.1).
type QuerySpec struct {
	Query string `json:"query"`
}

// ItemType is the value of the x-ms-item-type header of a query page, in
// PascalCase as the C# SDK requires (service-api §6.1).
type ItemType string

// Query item types.
const (
	ItemTwin        ItemType = "Twin"
	ItemRaw         ItemType = "Raw"
	ItemDeviceJob   ItemType = "DeviceJob"
	ItemJobResponse ItemType = "JobResponse"
)

// Query paging headers and limits (service-api §6.1).
const (
	HeaderMaxItemCount = "x-ms-max-item-count"
	HeaderContinuation = "x-ms-continuation"
	HeaderItemType     = "x-ms-item-type"
	HeaderErrorCode    = "iothub-errorcode"
	DefaultPageSize    = 100
	MaxPageSize        = 100
	MaxQueryLength     = 8192
)

// API versions (service-api §0.3, §11).
const (
	APIVersion       = "2021-04-12" // what the project's clients send
	APIVersionLegacy = "2020-09-30" // also accepted by the emulator
)
