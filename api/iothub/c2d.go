package iothub

// CloudToDeviceMessage is a cloud-to-device message as the emulator's send
// endpoint, POST /emulator/devices/{id}/messages/devicebound, takes it.
// Azure takes these messages over AMQP instead (service-api §8); the
// fields carry the same meaning as the AMQP message's properties.
type CloudToDeviceMessage struct {
	Body            string            `json:"body"`
	MessageID       string            `json:"messageId,omitempty"`
	CorrelationID   string            `json:"correlationId,omitempty"`
	UserID          string            `json:"userId,omitempty"`
	ContentType     string            `json:"contentType,omitempty"`
	ContentEncoding string            `json:"contentEncoding,omitempty"`
	ExpiryTimeUTC   *Time             `json:"expiryTimeUtc,omitempty"`
	Ack             string            `json:"ack,omitempty"` // iothub-ack: none, positive, negative, full
	Properties      map[string]string `json:"properties,omitempty"`
}
