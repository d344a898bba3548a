package iotservice

import (
	"bufio"
	"bytes"
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
	if err := s.attachSender(c2dHandle, amqp.C2DNode); err != nil {
		s.conn.Close()
		return nil, err
	}
	c.amqp, c.amqpTok = s, tok
	return s, nil
}

func (c *Client) closeAMQPLocked() {
	if c.amqp != nil {
		_ = c.amqp.send1(&amqp.Close{}, nil)
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
	props := &amqp.Properties{
		To:              "/devices/" + url.PathEscape(id) + amqp.C2DNode,
		UserID:          []byte(m.UserID),
		ContentType:     amqp.Symbol(m.ContentType),
		ContentEncoding: amqp.Symbol(m.ContentEncoding),
	}
	if m.UserID == "" {
		props.UserID = nil
	}
	if m.MessageID != "" {
		props.MessageID = m.MessageID
	}
	if m.CorrelationID != "" {
		props.CorrelationID = m.CorrelationID
	}
	if m.ExpiryTimeUTC != nil {
		props.AbsoluteExpiryTime = m.ExpiryTimeUTC.Time
	}
	app := map[any]any{}
	for k, v := range m.Properties {
		app[k] = v
	}
	if m.Ack != "" {
		app["iothub-ack"] = m.Ack
	}
	msg := &amqp.Message{Properties: props, ApplicationProperties: app, Data: [][]byte{[]byte(m.Body)}}
	b, _ := msg.Marshal(nil)
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
	if _, err := s.conn.Write(amqp.HeaderAMQP); err != nil {
		return err
	}
	var h [8]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		return err
	}
	if !bytes.Equal(h[:], amqp.HeaderAMQP) {
		return fmt.Errorf("the hub answered the protocol header with % x", h)
	}
	if err := s.send1(&amqp.Open{ContainerID: "iotservice-go", Hostname: host, MaxFrameSize: 1 << 20}, nil); err != nil {
		return err
	}
	if _, err := await[*amqp.Open](s); err != nil {
		return err
	}
	if err := s.send1(&amqp.Begin{IncomingWindow: 100, OutgoingWindow: 100, HandleMax: 8}, nil); err != nil {
		return err
	}
	_, err := await[*amqp.Begin](s)
	return err
}

// The links of the session.
const (
	cbsSendHandle = 0
	cbsRecvHandle = 1
	c2dHandle     = 2
)

// putToken authenticates the connection with a service token.
func (s *amqpSession) putToken(audience, token string) error {
	if err := s.attachSender(cbsSendHandle, amqp.CBSNode); err != nil {
		return err
	}
	rcv := &amqp.Attach{Name: "cbs-reply", Handle: cbsRecvHandle, Role: amqp.RoleReceiver,
		Source: &amqp.Source{Address: amqp.CBSNode}, Target: &amqp.Target{Address: "cbs"}}
	if err := s.send1(rcv, nil); err != nil {
		return err
	}
	if _, err := await[*amqp.Attach](s); err != nil {
		return err
	}
	h, count, credit := uint32(cbsRecvHandle), uint32(0), uint32(1)
	if err := s.send1(&amqp.Flow{IncomingWindow: 100, OutgoingWindow: 100, Handle: &h, DeliveryCount: &count, LinkCredit: &credit}, nil); err != nil {
		return err
	}
	b, _ := amqp.PutToken(amqp.CBSPutToken, audience, token).Marshal(nil)
	if err := s.transfer(cbsSendHandle, b); err != nil {
		return err
	}
	for {
		t, payload, err := awaitPayload[*amqp.Transfer](s)
		if err != nil {
			return err
		}
		if t.Handle != cbsRecvHandle {
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
	m, err := amqp.UnmarshalMessage(b)
	if err != nil {
		return 0, err.Error()
	}
	return amqp.CBSStatus(m)
}

func (s *amqpSession) attachSender(handle uint32, address string) error {
	zero := uint32(0)
	a := &amqp.Attach{Name: address, Handle: handle, Role: amqp.RoleSender, Source: &amqp.Source{Address: "iotservice"},
		Target: &amqp.Target{Address: address}, InitialDeliveryCount: &zero}
	if err := s.send1(a, nil); err != nil {
		return err
	}
	if _, err := await[*amqp.Attach](s); err != nil {
		return err
	}
	for handle != c2dHandle || s.credit == 0 {
		f, err := await[*amqp.Flow](s)
		if err != nil {
			return err
		}
		if f.Handle != nil && *f.Handle == handle {
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
		if _, err := await[*amqp.Flow](s); err != nil {
			return err
		}
	}
	if err := s.transfer(c2dHandle, msg); err != nil {
		return err
	}
	s.credit--
	s.sent++
	d, err := await[*amqp.Disposition](s)
	if err != nil {
		return err
	}
	if r, ok := d.State.(*amqp.Rejected); ok {
		return amqpError(r.Error)
	}
	return nil
}

// transfer sends an unsettled message in one frame.
func (s *amqpSession) transfer(handle uint32, msg []byte) error {
	s.delivery++
	var tag [4]byte
	binary.BigEndian.PutUint32(tag[:], s.delivery)
	id, format := s.delivery, uint32(0)
	return s.send1(&amqp.Transfer{Handle: handle, DeliveryID: &id, DeliveryTag: tag[:], MessageFormat: &format}, msg)
}

// send1 writes one frame.
func (s *amqpSession) send1(p amqp.Performative, payload []byte) error {
	b, err := amqp.AppendFrame(nil, 0, p, payload)
	if err != nil {
		return err
	}
	_, err = s.conn.Write(b)
	return err
}

// await reads frames until a performative of type P, skipping others
// (flow, say); a close or a detach with an error ends the wait.
func await[P amqp.Performative](s *amqpSession) (P, error) {
	p, _, err := awaitPayload[P](s)
	return p, err
}

func awaitPayload[P amqp.Performative](s *amqpSession) (P, []byte, error) {
	var zero P
	for {
		_, _, body, err := amqp.ReadFrame(s.r, 1<<24)
		if err != nil {
			return zero, nil, err
		}
		if len(body) == 0 {
			continue // heartbeat
		}
		p, payload, err := amqp.Unmarshal(body)
		if err != nil {
			return zero, nil, err
		}
		if f, ok := p.(*amqp.Flow); ok {
			s.noteCredit(f)
		}
		if want, ok := p.(P); ok {
			return want, payload, nil
		}
		switch f := p.(type) {
		case *amqp.Close:
			return zero, nil, amqpError(f.Error)
		case *amqp.Detach:
			if f.Error != nil {
				return zero, nil, amqpError(f.Error)
			}
		}
	}
}

// noteCredit records the credit a flow frame grants the
// /messages/devicebound link: link-credit counts from the delivery-count
// the hub names.
func (s *amqpSession) noteCredit(f *amqp.Flow) {
	if f.Handle == nil || *f.Handle != c2dHandle || f.LinkCredit == nil {
		return
	}
	var count uint32
	if f.DeliveryCount != nil {
		count = *f.DeliveryCount
	}
	if count+*f.LinkCredit > s.sent {
		s.credit = count + *f.LinkCredit - s.sent
	} else {
		s.credit = 0
	}
}

// amqpError turns an AMQP error into the hub's error.
func amqpError(e *amqp.Error) error {
	if e == nil {
		return errors.New("iotservice: amqp: the hub closed the connection")
	}
	return &iothub.Error{Code: amqp.ErrorCode(string(e.Condition)), Message: fmt.Sprintf("%s: %s", e.Condition, e.Description)}
}
