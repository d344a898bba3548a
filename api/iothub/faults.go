package iothub

import (
	"encoding/json"
	"fmt"
	"time"
)

// The emulator-only API of tier emulation and faults (/emulator/tier and
// /emulator/faults), shared by the emulator and the invoker. Azure has
// no such API: it is how a test provokes on purpose what Azure does now
// and then.

// TierSettings are the tier a hub emulates. A zero Tier is no emulation:
// nothing is throttled.
type TierSettings struct {
	Tier  Tier `json:"tier"`
	Units int  `json:"units,omitempty"`
	// Window is how much of a throttle's rate may be used at once (a
	// token bucket holds rate × window): Azure applies its throttles over
	// "minute ranges", so a minute by default.
	Window Duration `json:"window,omitempty"`
	// Queue is how long an operation over its throttle may wait in the
	// traffic-shaping queue before it is refused: Azure first delays
	// requests past a throttle, then answers 429 once its queue is full
	// (its depth is not documented). Zero refuses at once, which is what
	// tests that provoke throttling want.
	Queue Duration `json:"queue,omitempty"`
	// Shaped counts the operations delayed by the queue, by operation.
	// A job's device operations are always shaped, never refused.
	Shaped map[string]int64 `json:"shaped,omitempty"`
	// Throttled counts the operations refused so far, by operation; the
	// daily quota as "dailyQuota".
	Throttled map[string]int64 `json:"throttled,omitempty"`
	// MessagesToday is how much of the daily quota is used, in meters.
	MessagesToday int64 `json:"messagesToday,omitempty"`
}

// FaultKind is what a fault does.
type FaultKind string

// The kinds of fault.
const (
	// FaultDisconnect closes the connections of a device (or all) once.
	FaultDisconnect FaultKind = "disconnect"
	// FaultRefuseConnects refuses new connections for Duration, as a hub
	// in an outage does (MQTT CONNACK 3, AMQP amqp:internal-error, HTTPS
	// 503 ServiceUnavailable).
	FaultRefuseConnects FaultKind = "refuseConnects"
	// FaultFail fails the next Count calls of Operation (or every call
	// for Duration) with ErrorCode.
	FaultFail FaultKind = "fail"
	// FaultDelay delays calls of Operation by Delay.
	FaultDelay FaultKind = "delay"
	// FaultDrop acknowledges messages of Operation (d2c or c2dSend) and
	// discards them.
	FaultDrop FaultKind = "drop"
	// FaultExpireToken treats a device's tokens as expired: its
	// connections close, and tokens made before the fault are refused.
	FaultExpireToken FaultKind = "expireToken"
	// FaultRestart drops every connection and keeps every session, as a
	// hub restart or failover does.
	FaultRestart FaultKind = "restart"
)

// FaultKinds lists the kinds.
var FaultKinds = []FaultKind{FaultDisconnect, FaultRefuseConnects, FaultFail, FaultDelay, FaultDrop, FaultExpireToken, FaultRestart}

// Fault is one fault, as created and as listed.
type Fault struct {
	ID   string    `json:"id,omitempty"`
	Kind FaultKind `json:"kind"`
	// DeviceID limits the fault to one device; zero or "*" is every device.
	DeviceID  string    `json:"deviceId,omitempty"`
	Operation Operation `json:"operation,omitempty"`
	// ErrorCode is the error a fail fault answers with, by name or number
	// (ThrottlingException, 503001). Zero means ServiceUnavailable.
	ErrorCode string `json:"errorCode,omitempty"`
	// Count ends the fault after so many calls; zero means no limit.
	Count int `json:"count,omitempty"`
	// Delay is a delay fault's delay.
	Delay Duration `json:"delay,omitempty"`
	// Duration ends the fault after so long; zero means no limit (a
	// fault with neither Count nor Duration lasts until cleared).
	Duration Duration `json:"duration,omitempty"`
	// Set by the emulator.
	Created time.Time `json:"createdTimeUtc,omitzero"`
	Ends    time.Time `json:"endTimeUtc,omitzero"`
	Hits    int       `json:"hits"`
	Active  bool      `json:"active"`
}

// FaultErrorCode is the code a fail fault answers with: its ErrorCode by
// name or number, ServiceUnavailable when it has none.
func (f Fault) FaultErrorCode() (ErrorCode, error) {
	if f.ErrorCode == "" {
		return ServiceUnavailable, nil
	}
	if c, ok := ParseErrorCode(f.ErrorCode); ok {
		return c, nil
	}
	var n int
	if _, err := fmt.Sscanf(f.ErrorCode, "%d", &n); err == nil && n >= 400000 && n < 600000 {
		return ErrorCode(n), nil
	}
	return 0, fmt.Errorf("unknown error code %q", f.ErrorCode)
}

// Duration is a time.Duration written as a string ("30s") in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a string ("1m30s") or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("a duration is a string such as \"30s\" or a number of seconds")
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}
