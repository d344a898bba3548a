package hub

import (
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
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
// device's lastActivityTime, keeps the message among the device's most
// recent ones and appends it to the telemetry log (device-protocol §8),
// returning once it is durable there, so the device's acknowledgement
// follows the write.
func (c *Conn) Telemetry(moduleID string, props map[string]string, body []byte) error {
	now := c.hub.now()
	e := c.e
	e.live.lastActivity.Store(now.UnixNano())
	rec := e.rec.Load()
	deviceID := rec.Device.DeviceID
	m := Message{DeviceID: e.id, ModuleID: moduleID, Properties: props, Body: body, EnqueuedTime: now}
	e.msgMu.Lock()
	if n := c.hub.opts.MessagesKept; len(e.messages) >= n {
		copy(e.messages, e.messages[len(e.messages)-n+1:])
		e.messages = e.messages[:n-1]
	}
	e.messages = append(e.messages, m)
	e.msgMu.Unlock()
	auth := "sas"
	if t := rec.Device.Authentication.Type; t == iothub.AuthSelfSigned || t == iothub.AuthCertificateAuthority {
		auth = "x509"
	}
	return c.hub.appendEvent(Event{Enqueued: now, DeviceID: deviceID, ModuleID: moduleID, GenerationID: rec.Device.GenerationID,
		AuthType: auth, ModelID: rec.Twin.ModelID, Properties: props, Body: body})
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
