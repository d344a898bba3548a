package broker

import (
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// NextRequestID numbers method requests per connection in lower-case hex,
// as the real hub does (device-protocol §10.1).
func (l *link) NextRequestID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rid++
	return topic.FormatRID(l.rid)
}

// SendMethod implements hub.Link.
func (l *link) SendMethod(name, rid string, payload []byte) error {
	return l.publish(topic.Method(name, rid), payload)
}

// SendDesired implements hub.Link.
func (l *link) SendDesired(version int64, body []byte) error {
	return l.publish(topic.Desired(version), body)
}

// Close implements hub.Link.
func (l *link) Close(reason string) {
	l.b.log.Info("closing device connection", "client", l.cl.ID, "reason", reason)
	l.cl.Stop(errors.New(reason))
}

// publish writes a QoS 0 message to this connection only: the hub sends
// method requests, twin responses and desired notifications at QoS 0
// (device-protocol §5.2).
func (l *link) publish(t topic.Topic, payload []byte) error {
	if payload == nil {
		payload = []byte{}
	}
	return l.cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   t.String(),
		Payload:     payload,
	})
}
