package amqp

import "github.com/iothub-emulator/iothub-emulator/api/iothub"

// Descriptors of the performatives, outcomes, termini and message sections
// (AMQP 1.0 parts 2, 3 and 5).
const (
	DescOpen        = 0x10
	DescBegin       = 0x11
	DescAttach      = 0x12
	DescFlow        = 0x13
	DescTransfer    = 0x14
	DescDisposition = 0x15
	DescDetach      = 0x16
	DescEnd         = 0x17
	DescClose       = 0x18
	DescError       = 0x1d
	DescAccepted    = 0x24
	DescRejected    = 0x25
	DescSource      = 0x28
	DescTarget      = 0x29

	DescSASLMechanisms = 0x40
	DescSASLInit       = 0x41
	DescSASLOutcome    = 0x44

	DescProperties    = 0x73
	DescAppProperties = 0x74
	DescData          = 0x75
	DescValue         = 0x77
)

// The nodes an IoT Hub service client uses (service-api §8).
const (
	CBSNode      = "$cbs"                            // claims-based security: put-token
	C2DNode      = "/messages/devicebound"           // cloud-to-device messages
	FeedbackNode = "/messages/serviceBound/feedback" // what became of them
)

// conditions maps the hub's errors to the AMQP error conditions the SDKs
// translate back (amqp:not-found is DeviceNotFoundError, and so on). A
// condition shared by several codes reads back as the first of them.
var conditions = []struct {
	code      iothub.ErrorCode
	condition Symbol
}{
	{iothub.DeviceNotFound, "amqp:not-found"},
	{iothub.DeviceMaximumQueueDepthExceeded, "amqp:resource-limit-exceeded"}, // what the service's C2D sender reads it as
	{iothub.IotHubQuotaExceeded, "amqp:resource-limit-exceeded"},             // Node devices: IotHubQuotaExceededError
	{iothub.MessageTooLarge, "amqp:link:message-size-exceeded"},
	{iothub.ArgumentInvalid, "amqp:invalid-field"},
	{iothub.IotHubUnauthorizedAccess, "amqp:unauthorized-access"},
	{iothub.ThrottlingException, "com.microsoft:device-container-throttled"}, // Node: ThrottlingError
}

// Condition is the AMQP error condition of a hub error code;
// amqp:internal-error for the codes without one.
func Condition(code iothub.ErrorCode) Symbol {
	for _, c := range conditions {
		if c.code == code {
			return c.condition
		}
	}
	return "amqp:internal-error"
}

// ErrorCode is the hub error code of an AMQP error condition; ServerError
// for the conditions without one.
func ErrorCode(condition string) iothub.ErrorCode {
	for _, c := range conditions {
		if string(c.condition) == condition {
			return c.code
		}
	}
	return iothub.ServerError
}

// BatchedMessageFormat is the message-format of a transfer whose data
// sections are each a whole encoded message: how the C# device SDK sends
// a batch of events (next-wave-protocols §2.4).
const BatchedMessageFormat = 0x80013700
