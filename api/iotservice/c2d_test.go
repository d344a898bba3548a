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
	m, err := amqp.UnmarshalMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	p := m.Properties
	if p.MessageID != "m1" || string(p.UserID) != "u" || p.To != "/devices/dev%201/messages/devicebound" || p.CorrelationID != "c1" ||
		p.ContentType != "application/json" || p.ContentEncoding != "utf-8" || !p.AbsoluteExpiryTime.Equal(exp.Time) {
		t.Fatalf("properties %#v", p)
	}
	if m.ApplicationProperties["k"] != "v" || m.ApplicationProperties["iothub-ack"] != "full" {
		t.Fatalf("application properties %#v", m.ApplicationProperties)
	}
	if len(m.Data) != 1 || string(m.Data[0]) != "hi" {
		t.Fatalf("body %#v", m.Data)
	}
}

// Ensure that the hub's AMQP refusals become its error codes.
func TestAMQPError(t *testing.T) {
	for cond, want := range map[string]iothub.ErrorCode{
		"amqp:not-found": iothub.DeviceNotFound, "amqp:resource-limit-exceeded": iothub.DeviceMaximumQueueDepthExceeded,
		"amqp:link:message-size-exceeded": iothub.MessageTooLarge, "amqp:invalid-field": iothub.ArgumentInvalid,
		"amqp:unauthorized-access": iothub.IotHubUnauthorizedAccess, "amqp:internal-error": iothub.ServerError,
	} {
		err := amqpError(&amqp.Error{Condition: amqp.Symbol(cond), Description: "why"})
		if iothub.CodeOf(err) != want {
			t.Errorf("%s: %v, want %s", cond, err, want)
		}
	}
	if amqpError(nil) == nil {
		t.Error("a close without an error is still an error")
	}
}
