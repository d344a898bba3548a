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

// SendC2D sends a cloud-to-device message to a device over AMQP, as the
// official service SDKs do (service-api §8): a connection to the hub's
// AMQP port, a token put on $cbs, and the message sent to
// /messages/devicebound. The hub's refusal comes back as an *iothub.Error
// (DeviceNotFound for an unknown device, and so on). The connection stays
// open for the next call, until Close or a new token; a call that finds
// it broken dials again once.
func (c *Client) SendC2D(ctx context.Context, id string, m iothub.CloudToDeviceMessage) error {
	msg := c2dMessage(id, m)
	c.amqpMu.Lock()
	defer c.amqpMu.Unlock()
	for attempt := 0; ; attempt++ {
		s, err := c.amqpSessionLocked(ctx)
		if err != nil {
			return fmt.Errorf("iotservice: amqp: %w", err)
		}
		err = s.send(ctx, msg)
		var hubErr *iothub.Error
		if err == nil || errors.As(err, &hubErr) {
			return err
		}
		c.closeAMQPLocked()
		if attempt == 1 {
			return fmt.Errorf("iotservice: amqp: %w", err)
		}
	}
}

// amqpSessionLocked returns the open session, or dials one: a new token
// means a new connection. The caller holds amqpMu.
func (c *Client) amqpSessionLocked(ctx context.Context) (*amqpSession, error) {
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	if c.amqp != nil && c.amqpTok == tok {
		return c.amqp, nil
	}
	c.closeAMQPLocked()
	s, err := c.dialAMQP(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.putToken(c.cs.HostName, tok); err != nil {
		s.conn.Close()
		return nil, err
	}
	if err := s.attachSender(2, amqp.C2DNode); err != nil {
		s.conn.Close()
		return nil, err
	}
	c.amqp, c.amqpTok = s, tok
	return s, nil
}

func (c *Client) closeAMQPLocked() {
	if c.amqp != nil {
		_ = c.amqp.frame(amqp.DescClose)
		c.amqp.conn.Close()
		c.amqp = nil
	}
}

// Close closes the client's AMQP connection, if it has one.
func (c *Client) Close() error {
	c.amqpMu.Lock()
	defer c.amqpMu.Unlock()
	c.closeAMQPLocked()
	return nil
}

// c2dMessage encodes m for /messages/devicebound: properties, application
// properties (iothub-ack among them) and the body as a data section.
func c2dMessage(id string, m iothub.CloudToDeviceMessage) []byte {
	props := make([]any, amqp.PropCount)
	props[amqp.PropTo] = "/devices/" + url.PathEscape(id) + amqp.C2DNode
	if m.MessageID != "" {
		props[amqp.PropMessageID] = m.MessageID
	}
	if m.UserID != "" {
		props[amqp.PropUserID] = []byte(m.UserID)
	}
	if m.CorrelationID != "" {
		props[amqp.PropCorrelationID] = m.CorrelationID
	}
	if m.ContentType != "" {
		props[amqp.PropContentType] = amqp.Symbol(m.ContentType)
	}
	if m.ContentEncoding != "" {
		props[amqp.PropContentEncoding] = amqp.Symbol(m.ContentEncoding)
	}
	if m.ExpiryTimeUTC != nil {
		props[amqp.PropExpiry] = m.ExpiryTimeUTC.Time
	}
	app := map[any]any{}
	for k, v := range m.Properties {
		app[k] = v
	}
	if m.Ack != "" {
		app["iothub-ack"] = m.Ack
	}
	b, _ := amqp.Append(nil, amqp.Describe(amqp.DescProperties, props))
	b, _ = amqp.Append(b, amqp.Describe(amqp.DescAppProperties, app))
	b, _ = amqp.Append(b, amqp.Describe(amqp.DescData, []byte(m.Body)))
	return b
}

// amqpSession is one AMQP connection with one session: the $cbs links
// (handles 0 and 1) and the link to /messages/devicebound (handle 2).
type amqpSession struct {
	conn     net.Conn
	r        *bufio.Reader
	delivery uint32
	credit   uint32 // on handle 2, as the hub last granted
	sent     uint32 // messages sent on handle 2: its delivery-count
}

// deadline bounds the next exchange by ctx, or by a minute.
func (s *amqpSession) deadline(ctx context.Context) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(time.Minute)
	}
	_ = s.conn.SetDeadline(d)
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
	s := &amqpSession{conn: nc, r: bufio.NewReader(nc)}
	s.deadline(ctx)
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
	if err := s.frame(amqp.DescOpen, "iotservice-go", host); err != nil {
		return err
	}
	if _, _, err := s.await(amqp.DescOpen); err != nil {
		return err
	}
	if err := s.frame(amqp.DescBegin, nil, uint32(0), uint32(100), uint32(100)); err != nil {
		return err
	}
	_, _, err := s.await(amqp.DescBegin)
	return err
}

// putToken authenticates the connection with a service token.
func (s *amqpSession) putToken(audience, token string) error {
	if err := s.attachSender(0, amqp.CBSNode); err != nil {
		return err
	}
	if err := s.frame(amqp.DescAttach, "cbs-reply", uint32(1), true, nil, nil, amqp.Describe(amqp.DescSource, []any{amqp.CBSNode}), amqp.Describe(amqp.DescTarget, []any{"cbs"})); err != nil {
		return err
	}
	if _, _, err := s.await(amqp.DescAttach); err != nil {
		return err
	}
	if err := s.frame(amqp.DescFlow, uint32(0), uint32(100), uint32(0), uint32(100), uint32(1), uint32(0), uint32(1)); err != nil {
		return err
	}
	req, _ := amqp.Append(nil, amqp.Describe(amqp.DescProperties, []any{"put-token", nil, amqp.CBSNode, nil, "cbs"}))
	req, _ = amqp.Append(req, amqp.Describe(amqp.DescAppProperties, map[any]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": audience}))
	req, _ = amqp.Append(req, amqp.Describe(amqp.DescValue, token))
	if err := s.transfer(0, req); err != nil {
		return err
	}
	for {
		f, payload, err := s.await(amqp.DescTransfer)
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
		if !ok || d.Descriptor != uint64(amqp.DescAppProperties) {
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
	if err := s.frame(amqp.DescAttach, address, handle, false, nil, nil, amqp.Describe(amqp.DescSource, []any{"iotservice"}), amqp.Describe(amqp.DescTarget, []any{address}), nil, false, uint32(0)); err != nil {
		return err
	}
	if _, _, err := s.await(amqp.DescAttach); err != nil {
		return err
	}
	for handle != 2 || s.credit == 0 {
		f, _, err := s.await(amqp.DescFlow)
		if err != nil {
			return err
		}
		if h, _ := amqp.AsUint(amqp.Field(f, 4)); h == uint64(handle) {
			return nil
		}
	}
	return nil
}

// send sends one message on the /messages/devicebound link and waits for
// its outcome, first for credit if the hub granted none.
func (s *amqpSession) send(ctx context.Context, msg []byte) error {
	s.deadline(ctx)
	for s.credit == 0 {
		if _, _, err := s.await(amqp.DescFlow); err != nil {
			return err
		}
	}
	if err := s.transfer(2, msg); err != nil {
		return err
	}
	s.credit--
	s.sent++
	f, _, err := s.await(amqp.DescDisposition)
	if err != nil {
		return err
	}
	if d, ok := amqp.Field(f, 4).(*amqp.Described); ok && d.Descriptor == uint64(amqp.DescRejected) {
		return amqpError(amqp.Field(d.Value.([]any), 0))
	}
	return nil
}

// transfer sends an unsettled message in one frame.
func (s *amqpSession) transfer(handle uint32, msg []byte) error {
	s.delivery++
	var tag [4]byte
	binary.BigEndian.PutUint32(tag[:], s.delivery)
	return s.frameWith(msg, amqp.DescTransfer, handle, s.delivery, tag[:], uint32(0), false)
}

func (s *amqpSession) frame(code uint64, fields ...any) error {
	return s.frameWith(nil, code, fields...)
}

func (s *amqpSession) frameWith(payload []byte, code uint64, fields ...any) error {
	b, err := amqp.AppendFrame(nil, amqp.FrameAMQP, 0, amqp.Describe(code, fields), payload)
	if err != nil {
		return err
	}
	_, err = s.conn.Write(b)
	return err
}

// await reads frames until a performative with code, skipping others
// (flow, say); a close or a detach with an error ends the wait.
func (s *amqpSession) await(code uint64) ([]any, []byte, error) {
	for {
		_, _, body, err := amqp.ReadFrame(s.r, 1<<24)
		if err != nil {
			return nil, nil, err
		}
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
		if got == amqp.DescFlow {
			s.noteCredit(f)
		}
		switch {
		case got == code:
			return f, payload, nil
		case got == amqp.DescClose:
			return nil, nil, amqpError(amqp.Field(f, 0))
		case got == amqp.DescDetach && amqp.Field(f, 2) != nil:
			return nil, nil, amqpError(amqp.Field(f, 2))
		}
	}
}

// noteCredit records the credit a flow frame grants the
// /messages/devicebound link: link-credit counts from the delivery-count
// the hub names.
func (s *amqpSession) noteCredit(f []any) {
	if h, ok := amqp.AsUint(amqp.Field(f, 4)); !ok || h != 2 {
		return
	}
	count, _ := amqp.AsUint(amqp.Field(f, 5))
	credit, _ := amqp.AsUint(amqp.Field(f, 6))
	sent := uint64(s.sent)
	if count+credit > sent {
		s.credit = uint32(count + credit - sent)
	} else {
		s.credit = 0
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
	return &iothub.Error{Code: amqp.ErrorCode(cond), Message: fmt.Sprintf("%s: %s", cond, desc)}
}
