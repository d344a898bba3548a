package httpdevice

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// Ensure that an event's headers, as the Node and C# SDKs send them, map
// to the bag keys of MQTT, application properties without their prefix,
// and that headers of other meanings are not carried.
func TestEventProperties(t *testing.T) {
	got := EventProperties(map[string]string{
		"iothub-messageid": "m1", "IoTHub-CorrelationId": "c1", "iothub-contenttype": "application/json",
		"iothub-contentencoding": "utf-8", "iothub-app-alert": "high", "iothub-app-": "dropped",
		"iothub-to": "/devices/d/messages/events", "dt-subject": "comp", "iothub-creationtimeutc": "2026-01-01T00:00:00Z",
		"content-length": "3",
	})
	want := map[string]string{"$.mid": "m1", "$.cid": "c1", "$.ct": "application/json", "$.ce": "utf-8", "alert": "high",
		"$.sub": "comp", "$.ctime": "2026-01-01T00:00:00Z"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

// Ensure that a batch in the SDKs' form reads back, and malformed ones
// are errors.
func TestParseBatch(t *testing.T) {
	evs, err := ParseBatch([]byte(`[{"body":"aGk=","properties":{"iothub-app-k":"v","iothub-messageid":"m"}},{"body":""}]`))
	if err != nil || len(evs) != 2 || string(evs[0].Body) != "hi" || evs[0].Properties["k"] != "v" || evs[0].Properties["$.mid"] != "m" || len(evs[1].Body) != 0 {
		t.Fatalf("%+v %v", evs, err)
	}
	for _, bad := range []string{``, `{}`, `[]`, `[{"properties":{}}]`, `[{"body":"***"}]`, `[1]`} {
		if _, err := ParseBatch([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// Ensure that a received message's headers carry the quoted lock token
// the SDKs strip, and every property.
func TestC2DHeaders(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := C2D{Lock: "l-1", MessageID: "m", To: "/devices/d/messages/devicebound", Ack: "full", Enqueued: at, DeliveryCount: 2,
		SequenceNumber: 7, Properties: map[string]string{"b": "2", "a": "1"}}.Headers()
	want := [][2]string{{"ETag", `"l-1"`}, {MessageID, "m"}, {To, "/devices/d/messages/devicebound"}, {Ack, "full"},
		{EnqueuedTime, "2026-01-02T03:04:05.0000000Z"}, {DeliveryCount, "2"}, {SequenceNumber, "7"},
		{"iothub-app-a", "1"}, {"iothub-app-b", "2"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got  %v\nwant %v", h, want)
	}
	for in, want := range map[string]string{`"l-1"`: "l-1", "l-1": "l-1", ` "x" `: "x", `"`: `"`} {
		if got := LockFromIfMatch(in); got != want {
			t.Errorf("LockFromIfMatch(%q) = %q", in, got)
		}
	}
}

func FuzzParseBatch(f *testing.F) {
	f.Add([]byte(`[{"body":"aGk=","properties":{"iothub-app-k":"v"}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := ParseBatch(b)
		if err == nil && len(evs) == 0 {
			t.Fatal("an empty batch parsed")
		}
	})
}

// Ensure that what a device sends reads back as the hub reads it, and
// what the hub answers reads back as the device's bag.
func TestClientSide(t *testing.T) {
	bag := topic.Properties{}.Set(topic.MessageID, "m-1").Set(topic.ContentType, "application/json").Set("$.exp", "x").Set("color", "red")
	headers := map[string]string{}
	for _, h := range EventHeaders(bag) {
		headers[h[0]] = h[1]
	}
	got := EventProperties(headers)
	if len(got) != 3 || got[topic.MessageID] != "m-1" || got[topic.ContentType] != "application/json" || got["color"] != "red" {
		t.Fatalf("EventProperties(EventHeaders) = %v (headers %v)", got, headers)
	}
	m := C2D{Lock: "l-1", MessageID: "c-1", To: "/devices/d/messages/devicebound", Ack: "full", Properties: map[string]string{"b": "2", "a": "1"}}
	h := map[string][]string{}
	for _, kv := range m.Headers() {
		h[http.CanonicalHeaderKey(kv[0])] = []string{kv[1]}
	}
	lock, props := ParseC2D(h)
	want := topic.Properties{}.Set(topic.MessageID, "c-1").Set(topic.To, "/devices/d/messages/devicebound").Set("iothub-ack", "full").Set("a", "1").Set("b", "2")
	if lock != "l-1" || props.Encode() != want.Encode() {
		t.Fatalf("ParseC2D = %q %s, want l-1 %s", lock, props.Encode(), want.Encode())
	}
}
