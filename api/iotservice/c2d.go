package iotservice

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// AMQP performatives and sections the sender uses (AMQP 1.0 parts 2 and 3).
const (
	pOpen, pBegin, pAttach, pFlow, pTransfer, pDisposition, pDetach, pClose = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x18
	pRejected                                                               = 0x25
	pSource, pTarget                                                        = 0x28, 0x29
	sProperties, sAppProperties, sData, sValue                              = 0x73, 0x74, 0x75, 0x77
)

// SendC2D sends a cloud-to-device message to a device over AMQP, as the
// official service SDKs do (service-api §8): a connection to the hub's
// AMQP port, a token put on $cbs, and the message sent to
// /messages/devicebound. The hub's refusal comes back as an *iothub.Error
// (DeviceNotFound for an unknown device, and so on). Each call uses its
// own connection.
func (c *Client) SendC2D(ctx context.Context, id string, m iothub.CloudToDeviceMessage) error {
	tok, err := c.token()
	if err != nil {
		return err
	}
	s, err := c.dialAMQP(ctx)
	if err != nil {
		return fmt.Errorf("iotservice: amqp: %w", err)
	}
	defer s.conn.Close()
	if err := s.putToken(c.cs.HostName, tok); err != nil {
		return err
	}
	err = s.send(c2dMessage(id, m))
	_ = s.frame(pClose)
	return err
}

// c2dMessage encodes m for /messages/devicebound: properties, application
// properties (iothub-ack among them) and the body as a data section.
func c2dMessage(id string, m iothub.CloudToDeviceMessage) []byte {
	props := []any{nil, nil, "/devices/" + url.PathEscape(id) + "/messages/devicebound", nil, nil, nil, nil, nil, nil}
	if m.MessageID != "" {
		props[0] = m.MessageID
	}
	if m.UserID != "" {
		props[1] = []byte(m.UserID)
	}
	if m.CorrelationID != "" {
		props[5] = m.CorrelationID
	}
	if m.ContentType != "" {
		props[6] = amqp.Symbol(m.ContentType)
	}
	if m.ContentEncoding != "" {
		props[7] = amqp.Symbol(m.ContentEncoding)
	}
	if m.ExpiryTimeUTC != nil {
		props[8] = m.ExpiryTimeUTC.Time
	}
	app := map[any]any{}
	for k, v := range m.Properties {
		app[k] = v
	}
	if m.Ack != "" {
		app["iothub-ack"] = m.Ack
	}
	b, _ := amqp.Append(nil, amqp.Describe(sProperties, props))
	b, _ = amqp.Append(b, amqp.Describe(sAppProperties, app))
	b, _ = amqp.Append(b, amqp.Describe(sData, []byte(m.Body)))
	return b
}

// amqpSession is one AMQP connection with one session, used by one call.
type amqpSession struct {
	conn     net.Conn
	r        *bufio.Reader
	delivery uint32
}

func (c *Client) dialAMQP(ctx context.Context) (*amqpSession, error) {
	host, _, err := net.SplitHostPort(c.amqpAddr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.tls != nil {
		cfg.RootCAs = c.tls.RootCAs
	}
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", c.amqpAddr)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	_ = nc.SetDeadline(deadline)
	s := &amqpSession{conn: nc, r: bufio.NewReader(nc)}
	if err := s.start(host); err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// start exchanges protocol headers, opens the connection and begins a
// session.
func (s *amqpSession) start(host string) error {
	if _, err := s.conn.Write([]byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}); err != nil {
		return err
	}
	var h [8]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		return err
	}
	if string(h[:]) != "AMQP\x00\x01\x00\x00" {
		return fmt.Errorf("the hub answered the protocol header with % x", h)
	}
	if err := s.frame(pOpen, "iotservice-go", host); err != nil {
		return err
	}
	if _, _, err := s.await(pOpen); err != nil {
		return err
	}
	if err := s.frame(pBegin, nil, uint32(0), uint32(100), uint32(100)); err != nil {
		return err
	}
	_, _, err := s.await(pBegin)
	return err
}

// putToken authenticates the connection with a service token.
func (s *amqpSession) putToken(audience, token string) error {
	if err := s.attachSender(0, "$cbs"); err != nil {
		return err
	}
	if err := s.frame(pAttach, "cbs-reply", uint32(1), true, nil, nil, amqp.Describe(pSource, []any{"$cbs"}), amqp.Describe(pTarget, []any{"cbs"})); err != nil {
		return err
	}
	if _, _, err := s.await(pAttach); err != nil {
		return err
	}
	if err := s.frame(pFlow, uint32(0), uint32(100), uint32(0), uint32(100), uint32(1), uint32(0), uint32(1)); err != nil {
		return err
	}
	req, _ := amqp.Append(nil, amqp.Describe(sProperties, []any{"put-token", nil, "$cbs", nil, "cbs"}))
	req, _ = amqp.Append(req, amqp.Describe(sAppProperties, map[any]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": audience}))
	req, _ = amqp.Append(req, amqp.Describe(sValue, token))
	if err := s.transfer(0, req); err != nil {
		return err
	}
	for {
		f, payload, err := s.await(pTransfer)
		if err != nil {
			return err
		}
		if h, _ := amqp.AsUint(amqp.Field(f, 0)); h != 1 {
			continue
		}
		status, desc := cbsStatus(payload)
		if status != 200 {
			return &iothub.Error{Code: iothub.IotHubUnauthorizedAccess, Message: fmt.Sprintf("put-token answered %d %s", status, desc)}
		}
		return nil
	}
}

// cbsStatus reads the status of a $cbs reply.
func cbsStatus(b []byte) (int64, string) {
	for len(b) > 0 {
		v, rest, err := amqp.Decode(b)
		if err != nil {
			return 0, err.Error()
		}
		b = rest
		d, ok := v.(*amqp.Described)
		if !ok || d.Descriptor != uint64(sAppProperties) {
			continue
		}
		m, _ := d.Value.(map[any]any)
		desc := amqp.AsString(m["status-description"])
		switch n := m["status-code"].(type) {
		case int32:
			return int64(n), desc
		case int64:
			return n, desc
		}
	}
	return 0, "no status"
}

func (s *amqpSession) attachSender(handle uint32, address string) error {
	if err := s.frame(pAttach, address, handle, false, nil, nil, amqp.Describe(pSource, []any{"iotservice"}), amqp.Describe(pTarget, []any{address}), nil, false, uint32(0)); err != nil {
		return err
	}
	if _, _, err := s.await(pAttach); err != nil {
		return err
	}
	_, _, err := s.await(pFlow) // credit
	return err
}

// send sends one message to /messages/devicebound and waits for its
// outcome.
func (s *amqpSession) send(msg []byte) error {
	if err := s.attachSender(2, "/messages/devicebound"); err != nil {
		return err
	}
	if err := s.transfer(2, msg); err != nil {
		return err
	}
	f, _, err := s.await(pDisposition)
	if err != nil {
		return err
	}
	if d, ok := amqp.Field(f, 4).(*amqp.Described); ok && d.Descriptor == uint64(pRejected) {
		return amqpError(amqp.Field(d.Value.([]any), 0))
	}
	return nil
}

// transfer sends an unsettled message in one frame.
func (s *amqpSession) transfer(handle uint32, msg []byte) error {
	s.delivery++
	var tag [4]byte
	binary.BigEndian.PutUint32(tag[:], s.delivery)
	return s.frameWith(msg, pTransfer, handle, s.delivery, tag[:], uint32(0), false)
}

func (s *amqpSession) frame(code uint64, fields ...any) error {
	return s.frameWith(nil, code, fields...)
}

func (s *amqpSession) frameWith(payload []byte, code uint64, fields ...any) error {
	b, err := amqp.Append(make([]byte, 8), amqp.Describe(code, fields))
	if err != nil {
		return err
	}
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	b[4] = 2
	_, err = s.conn.Write(b)
	return err
}

// await reads frames until a performative with code, skipping others
// (flow, say); a close or a detach with an error ends the wait.
func (s *amqpSession) await(code uint64) ([]any, []byte, error) {
	for {
		var h [8]byte
		if _, err := io.ReadFull(s.r, h[:]); err != nil {
			return nil, nil, err
		}
		size := binary.BigEndian.Uint32(h[:4])
		if size < 8 || size > 1<<24 || int(h[4])*4 < 8 {
			return nil, nil, fmt.Errorf("bad AMQP frame of %d bytes", size)
		}
		body := make([]byte, size-8)
		if _, err := io.ReadFull(s.r, body); err != nil {
			return nil, nil, err
		}
		body = body[int(h[4])*4-8:]
		if len(body) == 0 {
			continue // heartbeat
		}
		v, payload, err := amqp.Decode(body)
		if err != nil {
			return nil, nil, err
		}
		d, ok := v.(*amqp.Described)
		if !ok {
			return nil, nil, errors.New("a frame without a performative")
		}
		f, _ := d.Value.([]any)
		got, _ := amqp.AsUint(d.Descriptor)
		switch {
		case got == code:
			return f, payload, nil
		case got == pClose:
			return nil, nil, amqpError(amqp.Field(f, 0))
		case got == pDetach && amqp.Field(f, 2) != nil:
			return nil, nil, amqpError(amqp.Field(f, 2))
		}
	}
}

// amqpError turns an AMQP error into the hub's error.
func amqpError(v any) error {
	d, ok := v.(*amqp.Described)
	if !ok {
		return errors.New("iotservice: amqp: the hub closed the connection")
	}
	f, _ := d.Value.([]any)
	cond, desc := amqp.AsString(amqp.Field(f, 0)), amqp.AsString(amqp.Field(f, 1))
	code := iothub.ServerError
	switch cond {
	case "amqp:not-found":
		code = iothub.DeviceNotFound
	case "amqp:resource-limit-exceeded":
		code = iothub.DeviceMaximumQueueDepthExceeded
	case "amqp:link:message-size-exceeded":
		code = iothub.MessageTooLarge
	case "amqp:invalid-field":
		code = iothub.ArgumentInvalid
	case "amqp:unauthorized-access":
		code = iothub.IotHubUnauthorizedAccess
	}
	return &iothub.Error{Code: code, Message: fmt.Sprintf("%s: %s", cond, desc)}
}
