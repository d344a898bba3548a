package amqp

import (
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// Ensure that an event built from a topic's property bag reads back, on
// the hub's side, as the same bag: system properties in the properties
// section, the others as application properties.
func TestEventRoundTrip(t *testing.T) {
	bag := topic.Properties{}.Set(topic.MessageID, "m-1").Set(topic.CorrelationID, "c-1").Set(topic.ContentType, "application/json").
		Set(topic.ContentEncoding, "utf-8").Set(topic.UserID, "u").Set("alert", "high")
	m := Event("/devices/d/messages/events", bag, []byte("{}"))
	b, err := m.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	got := EventProperties(back)
	want := map[string]string{"$.mid": "m-1", "$.cid": "c-1", "$.ct": "application/json", "$.ce": "utf-8", "$.uid": "u", "alert": "high"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if back.Properties.To != "/devices/d/messages/events" || string(back.Body()) != "{}" {
		t.Errorf("to %q, body %q", back.Properties.To, back.Body())
	}
}

// Ensure that a cloud-to-device message reads as the bag a device on MQTT
// gets: ids of any type as strings, expiry, iothub-ack and application
// properties in name order.
func TestC2DProperties(t *testing.T) {
	u, ok := ParseUUID("0f8fad5b-d9cb-469f-a165-70867728950e")
	if !ok || u.String() != "0f8fad5b-d9cb-469f-a165-70867728950e" {
		t.Fatalf("ParseUUID: %v %v", u, ok)
	}
	exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &Message{Properties: &Properties{MessageID: u, CorrelationID: uint64(7), To: "/devices/d/messages/devicebound", AbsoluteExpiryTime: exp},
		ApplicationProperties: map[any]any{"iothub-ack": "full", "b": "2", "a": int32(1)}}
	got := C2DProperties(m)
	want := topic.Properties{}.Set(topic.MessageID, u.String()).Set(topic.CorrelationID, "7").Set(topic.To, "/devices/d/messages/devicebound").
		Set(topic.Expiry, "2026-01-02T03:04:05Z").Set("a", "1").Set("b", "2").Set("iothub-ack", "full")
	if got.Encode() != want.Encode() {
		t.Fatalf("got  %s\nwant %s", got.Encode(), want.Encode())
	}
	for _, bad := range []string{"", "0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5bxd9cb-469f-a165-70867728950e", "zf8fad5b-d9cb-469f-a165-70867728950e"} {
		if _, ok := ParseUUID(bad); ok {
			t.Errorf("ParseUUID(%q) accepted", bad)
		}
	}
}
