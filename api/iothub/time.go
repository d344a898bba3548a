package iothub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Time is a timestamp as IoT Hub writes it: UTC with seven fractional
// digits and a trailing Z ("2017-03-09T18:30:52.3167248Z"), or the .NET
// zero value "0001-01-01T00:00:00" when unset (service-api §3.1).
type Time struct{ time.Time }

// zeroTime is the text IoT Hub uses for a timestamp that was never set.
const zeroTime = "0001-01-01T00:00:00"

// layout is the hub's 7-digit fractional-second format.
const layout = "2006-01-02T15:04:05.0000000Z"

// NewTime returns t as a Time in UTC.
func NewTime(t time.Time) Time { return Time{t.UTC()} }

// String formats t the way the hub does.
func (t Time) String() string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format(layout)
}

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.String() + `"`), nil
}

// UnmarshalJSON accepts the hub's own format, the zero value, any RFC 3339
// time and null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*t = Time{}
		return nil
	}
	var s string
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && !bytes.ContainsRune(b, '\\') {
		s = string(b[1 : len(b)-1]) // the common case: no escapes to undo
	} else if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	p, err := ParseTime(s)
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// ParseTime parses a timestamp in any of the forms UnmarshalJSON accepts.
func ParseTime(s string) (Time, error) {
	if s == "" || s == zeroTime || s == zeroTime+"Z" {
		return Time{}, nil
	}
	for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05"} {
		if p, err := time.Parse(l, s); err == nil {
			if p.Year() == 1 {
				return Time{}, nil
			}
			return NewTime(p), nil
		}
	}
	return Time{}, fmt.Errorf("timestamp %q is not an ISO 8601 UTC time", s)
}
