package topic

import (
	"fmt"
	"strings"
)

// Feature is a family of topics the hub can send a device; a subscription
// enables the families its filter matches (device-protocol §5.1).
type Feature uint8

// Features.
const (
	FeatureMethods       Feature = 1 << iota // $iothub/methods/POST/#
	FeatureTwinResponses                     // $iothub/twin/res/#
	FeatureDesired                           // $iothub/twin/PATCH/properties/desired/#
	FeatureC2D                               // devices/{d}/messages/devicebound/#
	FeatureModuleInputs                      // devices/{d}/modules/{m}/inputs/# (IoT Edge; never delivered)
)

// WebSocketPath is the HTTP path of MQTT over WebSocket on port 443
// (device-protocol §1.1).
const WebSocketPath = "/$iothub/websocket"

// The filters the official SDKs subscribe with.
const (
	FilterMethods       = "$iothub/methods/POST/#"
	FilterTwinResponses = "$iothub/twin/res/#"
	FilterDesired       = "$iothub/twin/PATCH/properties/desired/#"
)

// FilterC2D is the documented cloud-to-device filter of a device.
func FilterC2D(deviceID string) string { return devicesPrefix + deviceID + "/" + deviceboundSeg + "/#" }

// Features resolves a subscription filter of the identity deviceID (and
// moduleID) against the topic families the hub can send it: the filter is
// valid when it MQTT-matches at least one family. Other devices' topics,
// unknown families and sub-branch filters (such as
// "devices/d/messages/devicebound/foo/#") are errors; the hub closes the
// connection on them.
func Features(filter, deviceID, moduleID string) (Feature, error) {
	samples := []struct {
		f     Feature
		topic string
	}{
		{FeatureMethods, methodsPOST + "m/?$rid=1"},
		{FeatureTwinResponses, twinRes + "200/?$rid=1"},
		{FeatureDesired, twinDesired + "?$version=1"},
	}
	if moduleID == "" {
		samples = append(samples, struct {
			f     Feature
			topic string
		}{FeatureC2D, devicesPrefix + deviceID + "/" + deviceboundSeg + "/x"})
	} else {
		samples = append(samples, struct {
			f     Feature
			topic string
		}{FeatureModuleInputs, devicesPrefix + deviceID + "/modules/" + moduleID + "/inputs/x/y"})
	}
	var got Feature
	if strings.HasPrefix(filter, methodsPOST) {
		// A per-method subscription ($iothub/methods/POST/{name}/#) is
		// allowed, though discouraged (device-protocol §10.1).
		got |= FeatureMethods
	}
	for _, s := range samples {
		if Match(filter, s.topic) {
			got |= s.f
		}
	}
	if got == 0 {
		return 0, fmt.Errorf("filter %q matches no topic the hub sends to %s", filter, identity(deviceID, moduleID))
	}
	return got, nil
}

func identity(d, m string) string {
	if m != "" {
		return d + "/" + m
	}
	return d
}

// Match reports whether topic matches the MQTT filter: '+' matches one
// level, a final '#' the rest, and wildcards at the first level never match
// a topic starting with '$' (MQTT 3.1.1 §4.7).
func Match(filter, topic string) bool {
	if filter == "" || topic == "" {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, f := range fl {
		switch {
		case f == "#":
			return i == len(fl)-1
		case i >= len(tl):
			return false
		case f == "+":
		case strings.ContainsAny(f, "+#"):
			return false
		case f != tl[i]:
			return false
		}
	}
	return len(fl) == len(tl)
}
