package hub

import (
	"time"
)

// Message is a device-to-cloud message as the hub keeps it.
type Message struct {
	DeviceID     string            `json:"deviceId"`
	ModuleID     string            `json:"moduleId,omitempty"`
	Properties   map[string]string `json:"properties"`
	Body         []byte            `json:"body"`
	EnqueuedTime time.Time         `json:"enqueuedTime"`
}

// Telemetry accepts a device-to-cloud message from c: it updates the
// device's lastActivityTime and keeps the message among the device's most
// recent ones (device-protocol §8).
func (c *Conn) Telemetry(moduleID string, props map[string]string, body []byte) {
	now := c.hub.now()
	c.e.live.lastActivity.Store(now.UnixNano())
	m := Message{DeviceID: c.e.id, ModuleID: moduleID, Properties: props, Body: body, EnqueuedTime: now}
	e := c.e
	e.msgMu.Lock()
	defer e.msgMu.Unlock()
	if n := c.hub.opts.MessagesKept; len(e.messages) >= n {
		copy(e.messages, e.messages[len(e.messages)-n+1:])
		e.messages = e.messages[:n-1]
	}
	e.messages = append(e.messages, m)
}

// Messages returns a device's most recent telemetry, oldest first.
func (h *Hub) Messages(deviceID string) ([]Message, error) {
	e, err := h.entry(deviceID)
	if err != nil {
		return nil, err
	}
	e.msgMu.Lock()
	defer e.msgMu.Unlock()
	return append([]Message(nil), e.messages...), nil
}
