package amqp

import "net/url"

// Claims-based security: a put-token request on the $cbs node carries
// these application properties and the token as an amqp-value string; the
// answer carries a status code (an int, 200 when accepted) and a
// description (next-wave-protocols §2.2).
const (
	CBSOperation         = "operation"
	CBSPutToken          = "put-token"
	CBSType              = "type"
	CBSName              = "name"
	CBSTokenType         = "servicebus.windows.net:sastoken" // Node; C# sends azure-devices.net:sastoken
	CBSStatusCode        = "status-code"
	CBSStatusDescription = "status-description"
)

// Names on the device links (next-wave-protocols §2.3–§2.7).
const (
	// ClientVersionProperty and APIVersionProperty are attach properties
	// of every device link.
	ClientVersionProperty = "com.microsoft:client-version"
	APIVersionProperty    = "com.microsoft:api-version"
	// ChannelCorrelationProperty pairs the two links of the methods and
	// twin channels: "methods:{uuid}" and "twin:{uuid}", the same uuid on
	// both links.
	ChannelCorrelationProperty = "com.microsoft:channel-correlation-id"

	// MethodNameProperty names the method of a request; MethodStatusProperty
	// carries the device's status (an int) on its response. The request's
	// correlation-id is a uuid, echoed by the response.
	MethodNameProperty   = "IoThub-methodname"
	MethodStatusProperty = "IoThub-status"

	// Twin requests carry an operation and a resource annotation, the
	// answers a status (an int) and, for a reported patch, the new version.
	TwinOperation        = "operation"
	TwinResource         = "resource"
	TwinStatus           = "status"
	TwinVersion          = "version"
	TwinReportedResource = "/properties/reported"
	TwinDesiredResource  = "/notifications/twin/properties/desired"

	// Annotations of a cloud-to-device message.
	LockTokenAnnotation     = "x-opt-lock-token"
	DeliveryCountAnnotation = "iothub-deliverycount"
	EnqueuedTimeAnnotation  = "iothub-enqueuedtime"
)

// DevicePath is /devices/{d} or /devices/{d}/modules/{m}, ids escaped as
// path segments.
func DevicePath(deviceID, moduleID string) string {
	p := "/devices/" + url.PathEscape(deviceID)
	if moduleID != "" {
		p += "/modules/" + url.PathEscape(moduleID)
	}
	return p
}

// Device link addresses, relative to DevicePath.
const (
	EventsSuffix      = "/messages/events"
	DeviceBoundSuffix = "/messages/devicebound"
	MethodsSuffix     = "/methods/devicebound"
	TwinSuffix        = "/twin"
)

// PutToken is the $cbs request that puts token for audience, with the
// reply address "cbs".
func PutToken(messageID any, audience, token string) *Message {
	return &Message{
		Properties:            &Properties{MessageID: messageID, To: CBSNode, ReplyTo: "cbs"},
		ApplicationProperties: map[any]any{CBSOperation: CBSPutToken, CBSType: CBSTokenType, CBSName: audience},
		Value:                 token, HasValue: true,
	}
}

// CBSStatus reads the status code and description of a $cbs answer; the
// code is 0 when the answer has none.
func CBSStatus(m *Message) (int64, string) {
	code, _ := AsInt(m.ApplicationProperties[CBSStatusCode])
	return code, m.AppProperty(CBSStatusDescription)
}
