package iotservice

import (
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Ensure that a cloud-to-device message encodes as the hub reads it: the
// address in to, the ids, content type and encoding, expiry, application
// properties with iothub-ack, and the body as data.
func TestC2DMessage(t *testing.T) {
	exp := iothub.NewTime(time.UnixMilli(1_800_000_000_000))
	b := c2dMessage("dev 1", iothub.CloudToDeviceMessage{Body: "hi", MessageID: "m1", CorrelationID: "c1", UserID: "u",
		ContentType: "application/json", ContentEncoding: "utf-8", ExpiryTimeUTC: &exp, Ack: "full", Properties: map[string]string{"k": "v"}})
	var sections []*amqp.Described
	for len(b) > 0 {
		v, rest, err := amqp.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		sections, b = append(sections, v.(*amqp.Described)), rest
	}
	props := sections[0].Value.([]any)
	if props[0] != "m1" || string(props[1].([]byte)) != "u" || props[2] != "/devices/dev%201/messages/devicebound" || props[5] != "c1" ||
		props[6] != amqp.Symbol("application/json") || props[7] != amqp.Symbol("utf-8") || !props[8].(time.Time).Equal(exp.Time) {
		t.Fatalf("properties %#v", props)
	}
	app := sections[1].Value.(map[any]any)
	if app["k"] != "v" || app["iothub-ack"] != "full" {
		t.Fatalf("application properties %#v", app)
	}
	if string(sections[2].Value.([]byte)) != "hi" {
		t.Fatalf("body %#v", sections[2].Value)
	}
}

// Ensure that the hub's AMQP refusals become its error codes.
func TestAMQPError(t *testing.T) {
	for cond, want := range map[string]iothub.ErrorCode{
		"amqp:not-found": iothub.DeviceNotFound, "amqp:resource-limit-exceeded": iothub.DeviceMaximumQueueDepthExceeded,
		"amqp:link:message-size-exceeded": iothub.MessageTooLarge, "amqp:invalid-field": iothub.ArgumentInvalid,
		"amqp:unauthorized-access": iothub.IotHubUnauthorizedAccess, "amqp:internal-error": iothub.ServerError,
	} {
		err := amqpError(amqp.Describe(0x1d, []any{amqp.Symbol(cond), "why"}))
		if iothub.CodeOf(err) != want {
			t.Errorf("%s: %v, want %s", cond, err, want)
		}
	}
	if amqpError(nil) == nil {
		t.Error("a close without an error is still an error")
	}
}
