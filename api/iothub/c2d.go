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

// FeedbackRecord reports what became of a cloud-to-device message whose
// sender asked for acknowledgement (iothub-ack). The hub sends batches of
// them, as a JSON array, to /messages/serviceBound/feedback (service-api §8).
type FeedbackRecord struct {
	OriginalMessageID  string `json:"originalMessageId"`
	DeviceGenerationID string `json:"deviceGenerationId"`
	DeviceID           string `json:"deviceId"`
	EnqueuedTimeUTC    Time   `json:"enqueuedTimeUtc"`
	StatusCode         string `json:"statusCode"`
	Description        string `json:"description"`
}

// Feedback status codes.
const (
	FeedbackSuccess               = "Success"
	FeedbackExpired               = "Expired"
	FeedbackPurged                = "Purged"
	FeedbackRejected              = "Rejected"
	FeedbackDeliveryCountExceeded = "DeliveryCountExceeded"
)

// FeedbackContentType is the content type of a feedback batch.
const FeedbackContentType = "application/vnd.microsoft.iothub.feedback.json"

// WantsFeedback reports whether a message sent with iothub-ack ack gets a
// feedback record when it ends with status: positive asks for successes,
// negative for failures, full for both.
func WantsFeedback(ack, status string) bool {
	switch ack {
	case "full":
		return true
	case "positive":
		return status == FeedbackSuccess
	case "negative":
		return status != FeedbackSuccess
	}
	return false
}
