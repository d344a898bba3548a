package broker

import (
	"errors"
	"sort"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
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

// SendC2D implements hub.Link: the message goes out at QoS 1 on
// devices/{d}/messages/devicebound/{bag}, and the device's PUBACK
// completes it (device-protocol §7.3, §9.1). The broker, not mochi, tracks
// these packet ids, so mochi never resends them on a later connection. A
// device whose subscription was granted QoS 0 gets it at QoS 0, and it is
// complete once written: at most once (device-protocol §5.2).
func (l *link) SendC2D(m hub.C2DMessage) error {
	d, _ := identity(l.cl.ID)
	t := topic.Topic{Kind: topic.C2D, DeviceID: d, Properties: c2dBag(d, m)}
	if l.c2dAtMostOnce.Load() {
		tok := m.LockToken
		return l.push(delivery{pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: t.String(), Payload: m.Body},
			sent: func() { l.conn.CompleteC2D(tok) }})
	}
	l.mu.Lock()
	l.pid++
	if l.pid == 0 || l.pid > 65535 {
		l.pid = 1
	}
	id := l.pid
	if l.c2d == nil {
		l.c2d = map[uint16]string{}
	}
	l.c2d[uint16(id)] = m.LockToken
	l.mu.Unlock()
	return l.enqueue(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   t.String(),
		Payload:     m.Body,
		PacketID:    uint16(id),
	})
}

// c2dBag is the property bag of a cloud-to-device message in the order the
// hub writes it: system properties, iothub-ack, then application
// properties by name (device-protocol §7.3).
func c2dBag(deviceID string, m hub.C2DMessage) topic.Properties {
	var p topic.Properties
	if m.MessageID != "" {
		p = p.Set(topic.MessageID, m.MessageID)
	}
	p = p.Set(topic.To, "/devices/"+deviceID+"/messages/devicebound")
	for _, kv := range [][2]string{{topic.CorrelationID, m.CorrelationID}, {topic.UserID, m.UserID},
		{topic.ContentType, m.ContentType}, {topic.ContentEncoding, m.ContentEncoding}} {
		if kv[1] != "" {
			p = p.Set(kv[0], kv[1])
		}
	}
	if m.ExpirySet {
		p = p.Set(topic.Expiry, m.ExpiryTime.UTC().Format("2006-01-02T15:04:05.0000000Z"))
	}
	ack := m.Ack
	if ack == "" {
		ack = "none"
	}
	p = p.Set("iothub-ack", ack)
	names := make([]string, 0, len(m.Properties))
	for k := range m.Properties {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		p = p.Set(k, m.Properties[k])
	}
	return p
}

// acked handles a PUBACK: the cloud-to-device message sent with that
// packet id is complete.
func (l *link) acked(packetID uint16) {
	l.mu.Lock()
	tok, ok := l.c2d[packetID]
	delete(l.c2d, packetID)
	l.mu.Unlock()
	if ok {
		l.conn.CompleteC2D(tok)
	}
}

// Close implements hub.Link.
func (l *link) Close(e *iothub.Error) { l.drop(e.Message) }

// drop closes the connection, for the reason logged.
func (l *link) drop(reason string) {
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
	return l.enqueue(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   t.String(),
		Payload:     payload,
	})
}

var errQueueFull = errors.New("the device does not read its connection")

// enqueue queues a delivery for the device; the writer goroutine starts
// if none runs. A device that lets the queue fill is disconnected.
func (l *link) enqueue(pk packets.Packet) error {
	return l.push(delivery{pk: pk})
}

// ackAfter queues the PUBACK of a QoS 1 publish: it is written, in the
// order of the publishes [MQTT-4.6.0-2], once wait (if set) says the
// message is durable, and never if it could not be stored. A device with
// maxPendingAcks acknowledgements queued waits here for this one, so a
// flood slows down instead of piling up.
func (l *link) ackAfter(packetID uint16, wait func() error) error {
	l.qmu.Lock()
	full := l.acks >= maxPendingAcks
	l.qmu.Unlock()
	if full && wait != nil {
		if err := wait(); err != nil {
			return err
		}
	}
	return l.push(delivery{pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: packetID}, wait: wait})
}

func (l *link) push(d delivery) error {
	if l.cl.Closed() {
		return mqtt.ErrConnectionClosed
	}
	l.qmu.Lock()
	if len(l.queue) >= maxQueue {
		l.qmu.Unlock()
		l.drop(errQueueFull.Error())
		return errQueueFull
	}
	l.queue = append(l.queue, d)
	if d.pk.FixedHeader.Type == packets.Puback {
		l.acks++
	}
	start := !l.writing
	l.writing = true
	l.qmu.Unlock()
	if start {
		l.b.drains.Add(1)
		go func() {
			defer l.b.drains.Done()
			l.drain()
		}()
	}
	return nil
}

// drain writes queued deliveries in order until the queue is empty. A
// write that fails (its deadline passed: the device's socket stayed full)
// disconnects the device and drops what is queued; a message that could
// not be stored disconnects it unacknowledged.
func (l *link) drain() {
	for {
		l.qmu.Lock()
		if len(l.queue) == 0 || l.cl.Closed() {
			dropped := l.queue
			l.queue, l.acks, l.writing = nil, 0, false
			l.qmu.Unlock()
			for _, d := range dropped {
				if d.wait != nil {
					d.wait() // the message is stored even if its PUBACK is lost
				}
			}
			return
		}
		d := l.queue[0]
		l.queue[0] = delivery{}
		l.queue = l.queue[1:]
		if d.pk.FixedHeader.Type == packets.Puback {
			l.acks--
		}
		l.qmu.Unlock()
		if d.wait != nil {
			if err := d.wait(); err != nil {
				l.drop("the message could not be stored: " + err.Error())
				continue
			}
		}
		if err := l.cl.WritePacket(d.pk); err != nil {
			l.drop("writing to the device failed: " + err.Error())
		} else if d.sent != nil {
			d.sent()
		}
	}
}
