package hub

import (
	"context"
	"errors"
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
// device's lastActivityTime and appends the message to the telemetry log
// (device-protocol §8), returning once it is durable there, so the
// device's acknowledgement follows the write.
func (c *Conn) Telemetry(moduleID string, props map[string]string, body []byte) error {
	return c.QueueTelemetry(moduleID, props, body)()
}

// QueueTelemetry is Telemetry without the wait: the message takes its
// place in the log now, and the returned wait returns once it is
// durable. A transport that acknowledges messages out of its read loop
// (MQTT QoS 1 PUBACKs, in order) acknowledges each after its wait.
func (c *Conn) QueueTelemetry(moduleID string, props map[string]string, body []byte) func() error {
	return c.hub.queueTelemetry(c.e, moduleID, props, body)
}

// An Event of a device that has no connection: what it sends over HTTPS.
type DeviceEvent struct {
	Properties map[string]string
	Body       []byte
}

// SendEvents accepts the events a device sends in one request, without a
// connection (HTTPS): they are appended in order and it returns once all
// are durable, the first failure otherwise. The identity must be enabled.
func (h *Hub) SendEvents(ctx context.Context, deviceID string, events []DeviceEvent) error {
	e, err := h.entry(deviceID)
	if err != nil {
		return err
	}
	if err := h.deviceEnabled(e); err != nil {
		return err
	}
	waits := make([]func() error, len(events))
	for i, ev := range events {
		waits[i] = h.queueTelemetry(e, "", ev.Properties, ev.Body)
	}
	for _, wait := range waits {
		if err := wait(); err != nil {
			var he *iothub.Error
			if errors.As(err, &he) {
				return he
			}
			return iothub.Errorf(iothub.ServerError, "the message could not be stored")
		}
	}
	return nil
}

func (h *Hub) queueTelemetry(e *entry, moduleID string, props map[string]string, body []byte) func() error {
	if h.res.on.Load() {
		size := len(body)
		for k, v := range props {
			size += len(k) + len(v)
		}
		if err := h.Admit(context.Background(), iothub.OpD2C, Key(e.id, moduleID), size); errors.Is(err, ErrDropped) {
			return func() error { return nil }
		} else if err != nil {
			return func() error { return err }
		}
	}
	now := h.now()
	e.live.lastActivity.Store(now.UnixNano())
	rec := e.rec.Load()
	deviceID := rec.Device.DeviceID
	auth := "sas"
	if t := rec.Device.Authentication.Type; t == iothub.AuthSelfSigned || t == iothub.AuthCertificateAuthority {
		auth = "x509"
	}
	return h.appendEvent(Event{Enqueued: now, DeviceID: deviceID, ModuleID: moduleID, GenerationID: rec.Device.GenerationID,
		AuthType: auth, ModelID: rec.Twin.ModelID, Properties: props, Body: body})
}

// Messages returns up to max of a device's most recent messages in the
// telemetry log, its modules' included, oldest first: the log read
// backwards from the end of the device's partition.
func (h *Hub) Messages(deviceID string, max int) ([]Message, error) {
	if _, err := h.entry(deviceID); err != nil {
		return nil, err
	}
	if h.ev.log == nil {
		return nil, ErrNoEventLog
	}
	p := h.PartitionOf(deviceID)
	info, err := h.Partition(p)
	if err != nil {
		return nil, err
	}
	const chunk = 1024
	var out []Message
	for end := info.Last; end >= info.Begin && len(out) < max; end -= chunk {
		from := max64(info.Begin, end-chunk+1)
		evs, err := h.ev.log.ReadEvents(p, from, int(end-from+1))
		if err != nil {
			return nil, err
		}
		var batch []Message
		for _, ev := range evs {
			if ev.DeviceID == deviceID {
				batch = append(batch, Message{DeviceID: ev.DeviceID, ModuleID: ev.ModuleID, Properties: ev.Properties, Body: ev.Body, EnqueuedTime: ev.Enqueued})
			}
		}
		out = append(batch, out...)
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}
