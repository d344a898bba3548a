package iothub

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrorCode is a numeric IoT Hub error code. Its first three digits are the
// HTTP status; its name goes in the iothub-errorcode header
// (service-api §2.1, §2.2).
type ErrorCode int

// The error codes the project uses, from service-api §2.2 (and
// device-protocol §3.4 and §4.3 for the connection codes), checked against
// the error table of IoT Hub's troubleshooting guide.
const (
	InvalidProtocolVersion                    ErrorCode = 400001 // missing or unsupported api-version
	InvalidOperation                          ErrorCode = 400003 // operation not valid in this state
	ArgumentInvalid                           ErrorCode = 400004 // bad field, twin key, timeout, query
	ArgumentNull                              ErrorCode = 400005 // missing required body or field
	IotHubFormatError                         ErrorCode = 400006 // unparsable JSON
	DeviceDefinedMultipleTimes                ErrorCode = 400011 // same id twice in a bulk request
	BulkRegistryOperationFailure              ErrorCode = 400013 // bulk partial failure
	ConnectionForcefullyClosed                ErrorCode = 400027 // ConnectionForcefullyClosedOnNewConnection
	InvalidConfigurationTargetCondition       ErrorCode = 400401 // bad targetCondition
	InvalidConfigurationContent               ErrorCode = 400402 // bad configuration content
	CannotModifyImmutableConfigurationContent ErrorCode = 400403 // content changed by an update
	InvalidConfigurationCustomMetricsQuery    ErrorCode = 400404 // bad metric query
	InvalidDigitalTwinJSONPatch               ErrorCode = 400505 // digital twin update that is not a JSON Patch we apply
	InvalidDigitalTwinPatch                   ErrorCode = 400507 // digital twin update with a value a property cannot hold
	InvalidDigitalTwinPatchPath               ErrorCode = 400508 // digital twin update with a bad path
	IotHubUnauthorizedAccess                  ErrorCode = 401002 // service auth failure
	IotHubUnauthorized                        ErrorCode = 401003 // device token rejected or expired
	IotHubQuotaExceeded                       ErrorCode = 403002 // daily message quota
	JobQuotaExceeded                          ErrorCode = 403003 // too many concurrent jobs
	DeviceMaximumQueueDepthExceeded           ErrorCode = 403004 // more than 50 pending C2D messages
	NotFound                                  ErrorCode = 404000 // unknown route (emulator; the hub's code is unverified)
	DeviceNotFound                            ErrorCode = 404001 // unknown device
	JobNotFound                               ErrorCode = 404002 // unknown job
	ModuleNotFound                            ErrorCode = 404010 // unknown module
	DeviceNotOnline                           ErrorCode = 404103 // method target not connected
	DeviceConnectionClosedRemotely            ErrorCode = 404104 // connection closed by the hub
	ConfigurationNotFound                     ErrorCode = 404301 // unknown configuration
	MethodNotAllowed                          ErrorCode = 405000 // HTTP method not served on a route (emulator)
	DeviceAlreadyExists                       ErrorCode = 409001 // create of an existing device
	JobAlreadyExists                          ErrorCode = 409104 // create of an existing job
	ModuleAlreadyExistsOnDevice               ErrorCode = 409301 // create of an existing module
	ConfigurationAlreadyExists                ErrorCode = 409401 // create of an existing configuration
	PreconditionFailed                        ErrorCode = 412001 // etag mismatch
	DeviceMessageLockLost                     ErrorCode = 412002 // a C2D lock token that is not the message's current lock
	MessageTooLarge                           ErrorCode = 413001 // payload over limit
	TooManyDevices                            ErrorCode = 413002 // more than 100 entries in bulk
	ConfigurationCountLimitExceeded           ErrorCode = 413101 // more than 100 configurations
	ThrottlingException                       ErrorCode = 429001 // throttled
	ThrottlingMaxActiveJobCountExceeded       ErrorCode = 429004 // too many active jobs
	ServerError                               ErrorCode = 500001 // internal error
	ServiceUnavailable                        ErrorCode = 503001 // temporarily unavailable
	GatewayTimeout                            ErrorCode = 504101 // device did not answer a method in time
)

var codeNames = map[ErrorCode]string{
	InvalidProtocolVersion:                    "InvalidProtocolVersion",
	InvalidOperation:                          "InvalidOperation",
	ArgumentInvalid:                           "ArgumentInvalid",
	ArgumentNull:                              "ArgumentNull",
	IotHubFormatError:                         "IotHubFormatError",
	DeviceDefinedMultipleTimes:                "DeviceDefinedMultipleTimes",
	BulkRegistryOperationFailure:              "BulkRegistryOperationFailure",
	ConnectionForcefullyClosed:                "ConnectionForcefullyClosedOnNewConnection",
	InvalidConfigurationTargetCondition:       "InvalidConfigurationTargetCondition",
	InvalidConfigurationContent:               "InvalidConfigurationContent",
	CannotModifyImmutableConfigurationContent: "CannotModifyImmutableConfigurationContent",
	InvalidConfigurationCustomMetricsQuery:    "InvalidConfigurationCustomMetricsQuery",
	InvalidDigitalTwinJSONPatch:               "InvalidDigitalTwinJsonPatch",
	InvalidDigitalTwinPatch:                   "InvalidDigitalTwinPatch",
	InvalidDigitalTwinPatchPath:               "InvalidDigitalTwinPatchPath",
	ConfigurationAlreadyExists:                "ConfigurationAlreadyExists",
	ConfigurationCountLimitExceeded:           "ConfigurationCountLimitExceeded",
	IotHubUnauthorizedAccess:                  "IotHubUnauthorizedAccess",
	IotHubUnauthorized:                        "IoTHubUnauthorized",
	IotHubQuotaExceeded:                       "IotHubQuotaExceeded",
	JobQuotaExceeded:                          "JobQuotaExceeded",
	DeviceMaximumQueueDepthExceeded:           "DeviceMaximumQueueDepthExceeded",
	NotFound:                                  "NotFound",
	MethodNotAllowed:                          "MethodNotAllowed",
	DeviceNotFound:                            "DeviceNotFound",
	JobNotFound:                               "JobNotFound",
	ModuleNotFound:                            "ModuleNotFound",
	DeviceNotOnline:                           "DeviceNotOnline",
	DeviceConnectionClosedRemotely:            "DeviceConnectionClosedRemotely",
	ConfigurationNotFound:                     "ConfigurationNotFound",
	DeviceAlreadyExists:                       "DeviceAlreadyExists",
	JobAlreadyExists:                          "JobAlreadyExists",
	ModuleAlreadyExistsOnDevice:               "ModuleAlreadyExistsOnDevice",
	PreconditionFailed:                        "PreconditionFailed",
	DeviceMessageLockLost:                     "DeviceMessageLockLost",
	MessageTooLarge:                           "MessageTooLarge",
	TooManyDevices:                            "TooManyDevices",
	ThrottlingException:                       "ThrottlingException",
	ThrottlingMaxActiveJobCountExceeded:       "ThrottlingMaxActiveJobCountExceeded",
	ServerError:                               "ServerError",
	ServiceUnavailable:                        "ServiceUnavailable",
	GatewayTimeout:                            "GatewayTimeout",
}

// HTTPStatus is the HTTP status of the code: its first three digits.
func (c ErrorCode) HTTPStatus() int { return int(c) / 1000 }

// String is the code's name, the value of the iothub-errorcode header.
func (c ErrorCode) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return strconv.Itoa(int(c))
}

// ParseErrorCode returns the code named name (as in the iothub-errorcode
// header); names compare case-insensitively.
func ParseErrorCode(name string) (ErrorCode, bool) {
	for c, n := range codeNames {
		if strings.EqualFold(n, name) {
			return c, true
		}
	}
	return 0, false
}

// Error is an IoT Hub error: a code and a human-readable message. It is the
// one error type the hub's behaviour returns; each edge translates it once
// (REST status and body, MQTT response status, client-side typed error).
type Error struct {
	Code    ErrorCode
	Message string
	// Info is the "info" member of the direct-method envelope, if any.
	Info map[string]string
	// RetryAfter is when a throttled client may try again (the
	// Retry-After header); zero when the error does not say.
	RetryAfter time.Duration
}

// Errorf returns an *Error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("%s (%d): %s", e.Code, int(e.Code), e.Message) }

// CodeOf returns the code of the first *Error in err's chain, ServerError
// for any other non-nil error and 0 for nil.
func CodeOf(err error) ErrorCode {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ServerError
}

// Envelope is the JSON body of a service-API error (service-api §2.1):
// Message carries either "ErrorCode:<Name>;<text>" (registry, twin, query,
// jobs, auth: envelope A) or an escaped JSON DeviceError (direct methods:
// envelope B).
type Envelope struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

// DeviceError is the JSON error the hub sends on twin response topics and
// inside envelope B (device-protocol §11.2, service-api §2.1).
type DeviceError struct {
	ErrorCode    int               `json:"errorCode"`
	TrackingID   string            `json:"trackingId"`
	Message      string            `json:"message"`
	Info         map[string]string `json:"info"`
	TimestampUTC string            `json:"timestampUtc"`
}

// RegistryEnvelope renders e in envelope A.
func (e *Error) RegistryEnvelope(trackingID string, now time.Time) Envelope {
	return Envelope{
		Message:          "ErrorCode:" + e.Code.String() + ";" + e.Message,
		ExceptionMessage: "Tracking ID:" + trackingID + "-G:0-TimeStamp:" + now.UTC().Format("01/02/2006 15:04:05"),
	}
}

// DeviceError renders e as the hub's JSON error object.
func (e *Error) DeviceError(trackingID string, now time.Time) DeviceError {
	info := e.Info
	if info == nil {
		info = map[string]string{}
	}
	return DeviceError{
		ErrorCode:    int(e.Code),
		TrackingID:   trackingID + "-TimeStamp:" + now.UTC().Format("01/02/2006 15:04:05"),
		Message:      e.Message,
		Info:         info,
		TimestampUTC: NewTime(now).String(),
	}
}

// MethodEnvelope renders e in envelope B: the DeviceError JSON escaped into
// Message.
func (e *Error) MethodEnvelope(trackingID string, now time.Time) Envelope {
	inner, _ := json.Marshal(e.DeviceError(trackingID, now))
	return Envelope{Message: string(inner)}
}

// Header is a response's headers, as http.Header holds them (an
// interface, so the hub, which imports this package, stays free of
// net/http).
type Header interface{ Get(key string) string }

// ParseErrorResponse turns an error response of the service or device
// HTTPS API back into an *Error: the code comes from the iothub-errorcode
// header, the numeric code or the "ErrorCode:" prefix in the body, else
// from the HTTP status; RetryAfter from a Retry-After of whole seconds.
func ParseErrorResponse(status int, header Header, body []byte) *Error {
	e := &Error{Message: fmt.Sprintf("HTTP status %d", status)}
	if header == nil {
		header = noHeader{}
	}
	if c, ok := ParseErrorCode(header.Get(HeaderErrorCode)); ok {
		e.Code = c
	}
	if secs, err := strconv.Atoi(header.Get("Retry-After")); err == nil && secs > 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	var env Envelope
	if json.Unmarshal(body, &env) == nil && env.Message != "" {
		var de DeviceError
		if strings.HasPrefix(env.Message, "{") && json.Unmarshal([]byte(env.Message), &de) == nil {
			e.Message, e.Info = de.Message, de.Info
			if de.ErrorCode != 0 {
				e.Code = ErrorCode(de.ErrorCode)
			}
		} else if rest, ok := strings.CutPrefix(env.Message, "ErrorCode:"); ok {
			name, text, _ := strings.Cut(rest, ";")
			e.Message = text
			if c, ok := ParseErrorCode(name); ok && e.Code == 0 {
				e.Code = c
			}
		} else {
			e.Message = env.Message
		}
	}
	if e.Code == 0 {
		e.Code = ErrorCode(status * 1000)
	}
	return e
}

type noHeader struct{}

func (noHeader) Get(string) string { return "" }
