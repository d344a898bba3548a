package hub

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// maxFeedback bounds the feedback records waiting for a service client;
// beyond it the oldest are dropped.
const maxFeedback = 10000

// addFeedback records durably how m ended for its device, if its sender
// asked.
func (h *Hub) addFeedback(e *entry, m C2DMessage, status, description string) {
	if !iothub.WantsFeedback(m.Ack, status) {
		return
	}
	dev := e.rec.Load().Device
	r := iothub.FeedbackRecord{OriginalMessageID: m.MessageID, DeviceGenerationID: dev.GenerationID, DeviceID: dev.DeviceID,
		EnqueuedTimeUTC: iothub.NewTime(h.now()), StatusCode: status, Description: description}
	if err := h.feedback.push(r); err != nil {
		h.log.Error("feedback record not stored", "device", dev.DeviceID, "error", err)
	}
}

// TakeFeedback waits for feedback records and takes all that are
// waiting, or returns ctx's error. The caller settles them: accepted
// deletes them, otherwise they are taken again first.
func (h *Hub) TakeFeedback(ctx context.Context) ([]iothub.FeedbackRecord, func(accepted bool), error) {
	return h.feedback.take(ctx, 0)
}
