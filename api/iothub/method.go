package iothub

import (
	"encoding/json"
	"strconv"
	"time"
)

// Direct-method limits (service-api §5.1, device-protocol §13.3).
const (
	MaxMethodPayload       = 128 * 1024
	DefaultResponseTimeout = 30 * time.Second
	MinResponseTimeout     = 5 * time.Second
	MaxResponseTimeout     = 300 * time.Second
	MaxConnectTimeout      = 300 * time.Second
)

// MethodRequest is the body of POST /twins/{id}/methods (service-api §5.1).
type MethodRequest struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload"`
	ResponseTimeoutInSeconds *int            `json:"responseTimeoutInSeconds,omitempty"`
	ConnectTimeoutInSeconds  *int            `json:"connectTimeoutInSeconds,omitempty"`
	// TimeoutInSeconds is the legacy name of the response timeout sent by
	// old clients; it is read, never written.
	TimeoutInSeconds *int `json:"timeoutInSeconds,omitempty"`
}

// MethodResult is the body of a successful method invocation: the device's
// status and payload, whatever status the device chose (service-api §5.2).
type MethodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// AppendJSON appends r as JSON to b, the payload as it is: a hub hands on
// a device's compact JSON answer without encoding it again. A nil payload
// is null.
func (r MethodResult) AppendJSON(b []byte) []byte {
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"payload":`...)
	if len(r.Payload) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, r.Payload...)
	}
	return append(b, '}')
}

// Timeouts returns the response and connect timeouts of r, with the hub's
// defaults (30 s and 0) filled in.
func (r MethodRequest) Timeouts() (response, connect time.Duration) {
	response = DefaultResponseTimeout
	if r.ResponseTimeoutInSeconds != nil {
		response = time.Duration(*r.ResponseTimeoutInSeconds) * time.Second
	} else if r.TimeoutInSeconds != nil {
		response = time.Duration(*r.TimeoutInSeconds) * time.Second
	}
	if r.ConnectTimeoutInSeconds != nil {
		connect = time.Duration(*r.ConnectTimeoutInSeconds) * time.Second
	}
	return response, connect
}

// Validate checks the method name, the timeouts (response 5–300 s, connect
// 0–300 s) and the payload size, as the hub does before it reaches the
// device (service-api §5.1).
func (r MethodRequest) Validate() error {
	if r.MethodName == "" {
		return Errorf(ArgumentNull, "methodName is required")
	}
	if !ValidMethodName(r.MethodName) {
		return Errorf(ArgumentInvalid, "methodName %q contains characters that are not allowed", r.MethodName)
	}
	resp, conn := r.Timeouts()
	if resp < MinResponseTimeout || resp > MaxResponseTimeout {
		return Errorf(ArgumentInvalid, "responseTimeoutInSeconds must be between %d and %d", int(MinResponseTimeout.Seconds()), int(MaxResponseTimeout.Seconds()))
	}
	if conn < 0 || conn > MaxConnectTimeout {
		return Errorf(ArgumentInvalid, "connectTimeoutInSeconds must be between 0 and %d", int(MaxConnectTimeout.Seconds()))
	}
	if len(r.Payload) > MaxMethodPayload {
		return Errorf(MessageTooLarge, "method payload is %d bytes; the limit is %d", len(r.Payload), MaxMethodPayload)
	}
	return nil
}

// ValidMethodName reports whether name uses only printable US-ASCII other
// than $ ( ) < > @ , ; : \ " / [ ] ? = { } space and tab
// (device-protocol §10.2). The * of Plug and Play component commands is
// allowed.
func ValidMethodName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= 0x20 || c >= 0x7f || containsByte(`$()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}
