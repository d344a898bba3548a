package hub

import (
	"context"
	"sync"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// maxFeedback bounds the feedback records waiting for a service client;
// beyond it the oldest are dropped.
const maxFeedback = 10000

// feedbackState holds feedback records until a service client takes them.
// They live in memory only.
type feedbackState struct {
	mu      sync.Mutex
	records []iothub.FeedbackRecord // guarded by mu
	ready   chan struct{}           // guarded by mu; closed when records arrive
}

// addFeedback records how m ended for deviceID if its sender asked.
func (h *Hub) addFeedback(e *entry, m C2DMessage, status, description string) {
	if !iothub.WantsFeedback(m.Ack, status) {
		return
	}
	dev := e.rec.Load().Device
	r := iothub.FeedbackRecord{OriginalMessageID: m.MessageID, DeviceGenerationID: dev.GenerationID, DeviceID: dev.DeviceID,
		EnqueuedTimeUTC: iothub.NewTime(h.now()), StatusCode: status, Description: description}
	f := &h.feedback
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, r)
	if len(f.records) > maxFeedback {
		f.records = f.records[len(f.records)-maxFeedback:]
	}
	if f.ready != nil {
		close(f.ready)
		f.ready = nil
	}
}

// TakeFeedback waits for feedback records and returns all that are
// waiting, or ctx's error.
func (h *Hub) TakeFeedback(ctx context.Context) ([]iothub.FeedbackRecord, error) {
	f := &h.feedback
	for {
		f.mu.Lock()
		if len(f.records) > 0 {
			out := f.records
			f.records = nil
			f.mu.Unlock()
			return out, nil
		}
		if f.ready == nil {
			f.ready = make(chan struct{})
		}
		ready := f.ready
		f.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
