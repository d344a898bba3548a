package topic

import (
	"reflect"
	"strings"
	"testing"
)

func sp(s string) *string { return &s }

// Ensure that every topic of device-protocol §0, as the SDKs write it,
// parses to the right Topic; errors are rows too.
func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Topic
		errPart string
	}{
		{in: "$iothub/methods/POST/rebootDevice/?$rid=1", want: Method("rebootDevice", "1")},
		{in: "$iothub/methods/POST/thermostat*getMaxMinReport/?$rid=a", want: Method("thermostat*getMaxMinReport", "a")},
		{in: "$iothub/methods/res/200/?$rid=1", want: MethodResult(200, "1")},
		{in: "$iothub/methods/res/404/?$rid=ff", want: MethodResult(404, "ff")},
		{in: "$iothub/twin/GET/?$rid=06770962-55c8-4122-ab7f-c352ca5a7daa", want: GetTwin("06770962-55c8-4122-ab7f-c352ca5a7daa")},
		{in: "$iothub/twin/GET/?$rid=patch_temp&extra=1", want: GetTwin("patch_temp")},
		{in: "$iothub/twin/PATCH/properties/reported/?$rid=941f", want: PatchReported("941f")},
		{in: "$iothub/twin/PATCH/properties/reported/?$rid=2&$version=5", want: Topic{Kind: TwinPatchReported, RequestID: "2", Version: 5}},
		{in: "$iothub/twin/res/200/?$rid=1", want: TwinResult(200, "1", 0)},
		{in: "$iothub/twin/res/204/?$rid=1&$version=3", want: TwinResult(204, "1", 3)},
		{in: "$iothub/twin/res/400/?$rid=x%20y", want: TwinResult(400, "x y", 0)},
		{in: "$iothub/twin/PATCH/properties/desired/?$version=7", want: Desired(7)},
		{in: "devices/dev1/messages/events/", want: Event("dev1", "", nil)},
		{in: "devices/dev1/messages/events", want: Event("dev1", "", nil)},
		{in: "devices/dev1/modules/m1/messages/events/", want: Event("dev1", "m1", nil)},
		{in: "devices/dev1/messages/events/%24.mid=msg-1&%24.cid=corr-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&level=3",
			want: Event("dev1", "", Properties{}.Set(MessageID, "msg-1").Set(CorrelationID, "corr-1").Set(ContentType, "application/json").Set(ContentEncoding, "utf-8").Set("alert", "high temp").Set("level", "3"))},
		{in: "devices/dev1/messages/events/a=1+2&flag&empty=/", want: Event("dev1", "", Properties{{"a", sp("1+2")}, {"flag", nil}, {"empty", sp("")}})},
		{in: "devices/dev1/messages/events/?a=%2f", want: Event("dev1", "", Properties{}.Set("a", "/"))},
		{in: "devices/pubsub/messages/devicebound/%24.mid=2c2d&%24.to=%2Fdevices%2Fpubsub%2Fmessages%2Fdevicebound&iothub-ack=none",
			want: Topic{Kind: C2D, DeviceID: "pubsub", Properties: Properties{}.Set(MessageID, "2c2d").Set(To, "/devices/pubsub/messages/devicebound").Set("iothub-ack", "none")}},
		{in: "devices/dev1/messages/devicebound/", want: Topic{Kind: C2D, DeviceID: "dev1"}},
		{in: "$iothub/methods/POST/m/?$rid=", errPart: "not be empty"},
		{in: "$iothub/methods/POST/m/?x=1", errPart: "missing $rid"},
		{in: "$iothub/methods/POST/m", errPart: "missing '/?$rid"},
		{in: "$iothub/methods/POST//?$rid=1", errPart: "empty method name"},
		{in: "$iothub/methods/res/abc/?$rid=1", errPart: "not a number"},
		{in: "$iothub/methods/res/0200/?$rid=1", errPart: "not a number"},
		{in: "$iothub/methods/res/200/$rid=1", errPart: "expected '?'"},
		{in: "$iothub/twin/res/204/?$rid=1&$version=x", errPart: "not a positive integer"},
		{in: "$iothub/twin/res/204/?$rid=1&$rid=2", errPart: "appear once"},
		{in: "$iothub/twin/PATCH/properties/desired/?$rid=1", errPart: "unexpected $rid"},
		{in: "$iothub/twin/PATCH/properties/desired/", errPart: "expected '?'"},
		{in: "$iothub/twin/PATCH/properties/desired/?", errPart: "missing $version"},
		{in: "$iothub/twin/GET/?$rid=%zz", errPart: "percent-encoding"},
		{in: "$iothub/twin/DELETE/?$rid=1", errPart: "unknown $iothub topic"},
		{in: "$iothub/twin/GET/?$version=1&$rid=1", errPart: "unexpected $version"},
		{in: "devices//messages/events/", errPart: "missing device id"},
		{in: "devices/d/modules//messages/events/", errPart: "missing module id"},
		{in: "devices/d/modules/m/messages/devicebound/", errPart: "unknown device topic"},
		{in: "devices/d/messages/other/", errPart: "unknown device topic"},
		{in: "devices/d/messages/events/a=%zz", errPart: "invalid value"},
		{in: "devices/d/messages/events/a=1/b=2", errPart: "unencoded '/'"},
		{in: "devices/d/messages/events/=1", errPart: "invalid key"},
		{in: "sensors/temperature", errPart: "not an IoT Hub topic"},
		{in: "", errPart: "not an IoT Hub topic"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("error %v, want one containing %q", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			again, err := Parse(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("Parse(%q) = %+v, %v", got.String(), again, err)
			}
		})
	}
}

// Ensure that the hub writes topics exactly as devices expect them:
// $rid first, $version after it, 204 for reported patches, bags with %24.
func TestString(t *testing.T) {
	tests := []struct {
		t    Topic
		want string
	}{
		{Method("rebootDevice", FormatRID(10)), "$iothub/methods/POST/rebootDevice/?$rid=a"},
		{MethodResult(200, "1"), "$iothub/methods/res/200/?$rid=1"},
		{GetTwin("u-1"), "$iothub/twin/GET/?$rid=u-1"},
		{PatchReported("2"), "$iothub/twin/PATCH/properties/reported/?$rid=2"},
		{TwinResult(204, "2", 4), "$iothub/twin/res/204/?$rid=2&$version=4"},
		{TwinResult(200, "2", 0), "$iothub/twin/res/200/?$rid=2"},
		{Desired(3), "$iothub/twin/PATCH/properties/desired/?$version=3"},
		{Event("d1", "", Properties{}.Set(MessageID, "m 1").Set("k", "a/b")), "devices/d1/messages/events/%24.mid=m%201&k=a%2Fb"},
		{Event("d1", "m1", nil), "devices/d1/modules/m1/messages/events/"},
		{Topic{Kind: C2D, DeviceID: "d1", Properties: Properties{}.Set(To, "/devices/d1/messages/devicebound")}, "devices/d1/messages/devicebound/%24.to=%2Fdevices%2Fd1%2Fmessages%2Fdevicebound"},
		{Topic{}, ""},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("got %s, want %s", got, tt.want)
		}
	}
	if FormatRID(1) != "1" || FormatRID(16) != "10" {
		t.Fatal("FormatRID is not a lower-case hex counter")
	}
}

func TestProperties(t *testing.T) {
	p, _ := ParseProperties("a=1&a=2&b")
	if v, ok := p.Get("a"); !ok || v != "2" {
		t.Fatalf("duplicate keys: got %q, want the last", v)
	}
	if v, ok := p.Get("b"); !ok || v != "" {
		t.Fatal("a key without a value is present")
	}
	if _, ok := p.Get("c"); ok {
		t.Fatal("a missing key is present")
	}
}

func TestFeatures(t *testing.T) {
	tests := []struct {
		filter, dev, mod string
		want             Feature
	}{
		{FilterMethods, "d1", "", FeatureMethods},
		{FilterTwinResponses, "d1", "", FeatureTwinResponses},
		{FilterDesired, "d1", "", FeatureDesired},
		{"$iothub/twin/#", "d1", "", FeatureTwinResponses | FeatureDesired},
		{"$iothub/#", "d1", "", FeatureMethods | FeatureTwinResponses | FeatureDesired},
		{FilterC2D("d1"), "d1", "", FeatureC2D},
		{"devices/+/messages/devicebound/#", "d1", "", FeatureC2D},
		{"devices/d1/messages/#", "d1", "", FeatureC2D},
		{"#", "d1", "", FeatureC2D},
		{"devices/d1/modules/m1/#", "d1", "m1", FeatureModuleInputs},
		{"$iothub/methods/POST/rebootDevice/#", "d1", "", FeatureMethods},
		{FilterC2D("d2"), "d1", "", 0},
		{"devices/d1/messages/devicebound/foo/#", "d1", "", 0},
		{FilterC2D("d1"), "d1", "m1", 0},
		{"sensors/#", "d1", "", 0},
		{"$SYS/#", "d1", "", 0},
	}
	for _, tt := range tests {
		got, err := Features(tt.filter, tt.dev, tt.mod)
		if got != tt.want || (err == nil) != (tt.want != 0) {
			t.Errorf("Features(%q, %q, %q) = %v, %v; want %v", tt.filter, tt.dev, tt.mod, got, err, tt.want)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "$iothub/x", false},
		{"+/x", "$iothub/x", false},
		{"a/#/b", "a/x/b", false},
		{"a/b+", "a/b+", false},
		{"", "a", false},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v", tt.filter, tt.topic, got)
		}
	}
}

func TestParseUsername(t *testing.T) {
	tests := []struct {
		in      string
		want    Username
		errPart string
	}{
		{in: "localhost/dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)",
			want: Username{Host: "localhost", DeviceID: "dev1", APIVersion: "2021-04-12", DeviceClientType: "azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)"}},
		{in: "localhost:18883/dev1/mod1/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3BThermostat%3B1",
			want: Username{Host: "localhost:18883", DeviceID: "dev1", ModuleID: "mod1", APIVersion: "2021-04-12", ModelID: "dtmi:com:example;Thermostat;1"}},
		{in: "myhub.azure-devices.net/dev?1=x/api-version=2018-06-30&DeviceClientType=iothubclient%2f1.9.0",
			want: Username{Host: "myhub.azure-devices.net", DeviceID: "dev?1=x", APIVersion: "2018-06-30", DeviceClientType: "iothubclient/1.9.0"}},
		{in: "h/d/?", want: Username{Host: "h", DeviceID: "d"}},
		{in: "h/d", errPart: "want {host}"},
		{in: "h/d/m/x/?api-version=1", errPart: "want {host}"},
		{in: "h/d/x", errPart: "must start with '?'"},
		{in: "/d/?api-version=1", errPart: "empty host"},
		{in: "h//?api-version=1", errPart: "empty host or device"},
		{in: "h/d//?api-version=1", errPart: "empty module"},
		{in: "h/d/?api-version=%zz", errPart: "percent-encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUsername(tt.in)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("error %v, want one containing %q", err, tt.errPart)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			again, err := ParseUsername(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip through %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

// FuzzParse checks that a topic that parses renders to a string that parses
// back to the same topic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"$iothub/methods/POST/rebootDevice/?$rid=1",
		"$iothub/methods/res/200/?$rid=1",
		"$iothub/twin/GET/?$rid=1",
		"$iothub/twin/PATCH/properties/reported/?$rid=2&$version=5",
		"$iothub/twin/res/204/?$rid=1&$version=3",
		"$iothub/twin/PATCH/properties/desired/?$version=7",
		"devices/dev1/messages/events/%24.mid=msg-1&a=b+c&flag&e=/",
		"devices/dev1/modules/m/messages/events",
		"devices/dev1/messages/devicebound/%24.to=%2Fdevices",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(tp.String())
		if err != nil {
			t.Fatalf("Parse(%q) ok, but Parse(%q) = %v", s, tp.String(), err)
		}
		if !reflect.DeepEqual(again, tp) {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, tp)
		}
	})
}

func FuzzParseUsername(f *testing.F) {
	f.Add("localhost/dev1/?api-version=2021-04-12&DeviceClientType=x%2F1")
	f.Add("h/d/m/api-version=1&model-id=a")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			return
		}
		again, err := ParseUsername(u.String())
		if err != nil || again != u {
			t.Fatalf("round trip of %q via %q: %+v, %v", s, u.String(), again, err)
		}
	})
}
