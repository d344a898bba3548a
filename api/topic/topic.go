// Package topic implements the MQTT naming grammar of Azure IoT Hub
// devices: the topics a device and the hub publish to each other, the
// subscription filters a device may use, and the CONNECT username
// (device-protocol §0, §4.1, §5.1, §7).
//
// Every "$iothub/..." and "devices/..." string of the project is built or
// parsed here. Parse(t.String()) == t for every valid Topic t. The package
// does no I/O.
package topic

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Kind is the kind of a topic.
type Kind int

// Topic kinds (device-protocol §0).
const (
	Invalid           Kind = iota
	MethodRequest          // hub→device $iothub/methods/POST/{name}/?$rid={rid}
	MethodResponse         // device→hub $iothub/methods/res/{status}/?$rid={rid}
	TwinGet                // device→hub $iothub/twin/GET/?$rid={rid}
	TwinPatchReported      // device→hub $iothub/twin/PATCH/properties/reported/?$rid={rid}[&$version={v}]
	TwinResponse           // hub→device $iothub/twin/res/{status}/?$rid={rid}[&$version={v}]
	TwinDesired            // hub→device $iothub/twin/PATCH/properties/desired/?$version={v}
	Telemetry              // device→hub devices/{d}[/modules/{m}]/messages/events/{bag}
	C2D                    // hub→device devices/{d}/messages/devicebound/{bag}
)

var kindNames = [...]string{"Invalid", "MethodRequest", "MethodResponse", "TwinGet", "TwinPatchReported", "TwinResponse", "TwinDesired", "Telemetry", "C2D"}

// String names the kind.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
	return kindNames[k]
}

// A Topic is a parsed IoT Hub topic. Fields its Kind does not use are zero.
type Topic struct {
	Kind       Kind
	DeviceID   string     // Telemetry, C2D
	ModuleID   string     // Telemetry from a module
	Method     string     // MethodRequest
	Status     int        // MethodResponse, TwinResponse
	RequestID  string     // $rid: all $iothub kinds but TwinDesired
	Version    int64      // $version; zero when absent
	Properties Properties // Telemetry, C2D
}

const (
	methodsPOST    = "$iothub/methods/POST/"
	methodsRes     = "$iothub/methods/res/"
	twinGET        = "$iothub/twin/GET/"
	twinReported   = "$iothub/twin/PATCH/properties/reported/"
	twinRes        = "$iothub/twin/res/"
	twinDesired    = "$iothub/twin/PATCH/properties/desired/"
	devicesPrefix  = "devices/"
	eventsSuffix   = "messages/events"
	deviceboundSeg = "messages/devicebound"
)

// Method builds the topic of a method request to a device.
func Method(name, rid string) Topic { return Topic{Kind: MethodRequest, Method: name, RequestID: rid} }

// MethodResult builds the topic of a device's method response.
func MethodResult(status int, rid string) Topic {
	return Topic{Kind: MethodResponse, Status: status, RequestID: rid}
}

// GetTwin builds the topic of a device's twin GET.
func GetTwin(rid string) Topic { return Topic{Kind: TwinGet, RequestID: rid} }

// PatchReported builds the topic of a device's reported-properties patch.
func PatchReported(rid string) Topic { return Topic{Kind: TwinPatchReported, RequestID: rid} }

// TwinResult builds the topic of the hub's answer to a twin request;
// version is the new reported $version after a patch, or 0.
func TwinResult(status int, rid string, version int64) Topic {
	return Topic{Kind: TwinResponse, Status: status, RequestID: rid, Version: version}
}

// Desired builds the topic of a desired-properties notification.
func Desired(version int64) Topic { return Topic{Kind: TwinDesired, Version: version} }

// Event builds the telemetry topic of a device (or module, if moduleID is
// set) with a property bag.
func Event(deviceID, moduleID string, props Properties) Topic {
	return Topic{Kind: Telemetry, DeviceID: deviceID, ModuleID: moduleID, Properties: props}
}

// String renders t. $rid is always the first query parameter, as the C SDK
// and .NET require (device-protocol §10.1, §11.1).
func (t Topic) String() string {
	switch t.Kind {
	case MethodRequest:
		return methodsPOST + t.Method + "/?$rid=" + iothub.Escape(t.RequestID)
	case MethodResponse:
		return methodsRes + strconv.Itoa(t.Status) + "/?$rid=" + iothub.Escape(t.RequestID)
	case TwinGet:
		return twinGET + "?$rid=" + iothub.Escape(t.RequestID)
	case TwinPatchReported:
		return twinReported + "?$rid=" + iothub.Escape(t.RequestID) + versionParam(t.Version)
	case TwinResponse:
		return twinRes + strconv.Itoa(t.Status) + "/?$rid=" + iothub.Escape(t.RequestID) + versionParam(t.Version)
	case TwinDesired:
		return twinDesired + "?$version=" + strconv.FormatInt(t.Version, 10)
	case Telemetry:
		return identityPrefix(t.DeviceID, t.ModuleID) + eventsSuffix + "/" + t.Properties.Encode()
	case C2D:
		return identityPrefix(t.DeviceID, "") + deviceboundSeg + "/" + t.Properties.Encode()
	}
	return ""
}

func versionParam(v int64) string {
	if v == 0 {
		return ""
	}
	return "&$version=" + strconv.FormatInt(v, 10)
}

func identityPrefix(d, m string) string {
	if m != "" {
		return devicesPrefix + d + "/modules/" + m + "/"
	}
	return devicesPrefix + d + "/"
}

// Parse parses an IoT Hub device topic. It is strict about the structure
// (an unknown topic is an error, as the hub closes the connection on one)
// and tolerant where SDKs differ: a leading '?' or trailing '/' around a
// property bag, escapes in either case, unknown query parameters after
// $rid.
func Parse(s string) (Topic, error) {
	if strings.HasPrefix(s, "$iothub/") {
		return parseHub(s)
	}
	if strings.HasPrefix(s, devicesPrefix) {
		return parseDevices(s)
	}
	return Topic{}, fmt.Errorf("topic %q: not an IoT Hub topic", s)
}

func parseHub(s string) (Topic, error) {
	switch {
	case strings.HasPrefix(s, methodsPOST):
		name, q, err := segmentAndQuery(s, s[len(methodsPOST):])
		if err != nil {
			return Topic{}, err
		}
		if name == "" {
			return Topic{}, fmt.Errorf("topic %q: empty method name", s)
		}
		t := Topic{Kind: MethodRequest, Method: name}
		return t, q.fill(s, &t, true, false)
	case strings.HasPrefix(s, methodsRes):
		return parseStatus(s, s[len(methodsRes):], MethodResponse, false)
	case strings.HasPrefix(s, twinRes):
		return parseStatus(s, s[len(twinRes):], TwinResponse, true)
	case strings.HasPrefix(s, twinGET):
		t := Topic{Kind: TwinGet}
		q, err := parseQuery(s, s[len(twinGET):])
		if err != nil {
			return Topic{}, err
		}
		return t, q.fill(s, &t, true, false)
	case strings.HasPrefix(s, twinReported):
		t := Topic{Kind: TwinPatchReported}
		q, err := parseQuery(s, s[len(twinReported):])
		if err != nil {
			return Topic{}, err
		}
		return t, q.fill(s, &t, true, true)
	case strings.HasPrefix(s, twinDesired):
		t := Topic{Kind: TwinDesired}
		q, err := parseQuery(s, s[len(twinDesired):])
		if err != nil {
			return Topic{}, err
		}
		if err := q.fill(s, &t, false, true); err != nil {
			return Topic{}, err
		}
		if t.Version == 0 {
			return Topic{}, fmt.Errorf("topic %q: missing $version", s)
		}
		return t, nil
	}
	return Topic{}, fmt.Errorf("topic %q: unknown $iothub topic", s)
}

func parseStatus(s, rest string, kind Kind, version bool) (Topic, error) {
	seg, q, err := segmentAndQuery(s, rest)
	if err != nil {
		return Topic{}, err
	}
	status, err := strconv.Atoi(seg)
	if err != nil || status < 0 || status > 999 || strconv.Itoa(status) != seg {
		return Topic{}, fmt.Errorf("topic %q: status %q is not a number from 0 to 999", s, seg)
	}
	t := Topic{Kind: kind, Status: status}
	return t, q.fill(s, &t, true, version)
}

// segmentAndQuery splits "{segment}/?{query}".
func segmentAndQuery(s, rest string) (string, query, error) {
	seg, q, ok := strings.Cut(rest, "/")
	if !ok {
		return "", nil, fmt.Errorf("topic %q: missing '/?$rid=...'", s)
	}
	qq, err := parseQuery(s, q)
	return seg, qq, err
}

type query [][2]string

func parseQuery(s, q string) (query, error) {
	q, ok := strings.CutPrefix(q, "?")
	if !ok {
		return nil, fmt.Errorf("topic %q: expected '?' before the parameters", s)
	}
	var out query
	for _, item := range strings.Split(q, "&") {
		if item == "" {
			continue
		}
		k, v, _ := strings.Cut(item, "=")
		dv, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("topic %q: parameter %q is not valid percent-encoding", s, k)
		}
		out = append(out, [2]string{k, dv})
	}
	return out, nil
}

// fill copies $rid and $version into t, requiring $rid when rid is set and
// allowing $version only when version is set.
func (q query) fill(s string, t *Topic, rid, version bool) error {
	seenRID := false
	for _, kv := range q {
		switch kv[0] {
		case "$rid":
			if !rid {
				return fmt.Errorf("topic %q: unexpected $rid", s)
			}
			if seenRID || kv[1] == "" {
				return fmt.Errorf("topic %q: $rid must appear once and not be empty", s)
			}
			seenRID = true
			t.RequestID = kv[1]
		case "$version":
			if !version {
				return fmt.Errorf("topic %q: unexpected $version", s)
			}
			v, err := strconv.ParseInt(kv[1], 10, 64)
			if err != nil || v <= 0 {
				return fmt.Errorf("topic %q: $version %q is not a positive integer", s, kv[1])
			}
			t.Version = v
		}
	}
	if rid && !seenRID {
		return fmt.Errorf("topic %q: missing $rid", s)
	}
	return nil
}

func parseDevices(s string) (Topic, error) {
	rest := s[len(devicesPrefix):]
	dev, rest, ok := strings.Cut(rest, "/")
	if !ok || dev == "" {
		return Topic{}, fmt.Errorf("topic %q: missing device id", s)
	}
	t := Topic{DeviceID: dev}
	if m, ok := strings.CutPrefix(rest, "modules/"); ok {
		mod, r, ok := strings.Cut(m, "/")
		if !ok || mod == "" {
			return Topic{}, fmt.Errorf("topic %q: missing module id", s)
		}
		t.ModuleID, rest = mod, r
	}
	var bag string
	switch {
	case rest == eventsSuffix:
		t.Kind = Telemetry
	case strings.HasPrefix(rest, eventsSuffix+"/"):
		t.Kind, bag = Telemetry, rest[len(eventsSuffix)+1:]
	case strings.HasPrefix(rest, deviceboundSeg+"/") && t.ModuleID == "":
		t.Kind, bag = C2D, rest[len(deviceboundSeg)+1:]
	default:
		return Topic{}, fmt.Errorf("topic %q: unknown device topic", s)
	}
	props, err := ParseProperties(bag)
	if err != nil {
		return Topic{}, fmt.Errorf("topic %q: %w", s, err)
	}
	t.Properties = props
	return t, nil
}

// FormatRID renders a hub-generated request id: a lower-case hex counter,
// as the real hub numbers method requests per connection (device-protocol
// §10.1).
func FormatRID(n uint64) string { return strconv.FormatUint(n, 16) }
