// Package amqplink is the AMQP 1.0 client of the api packages, on
// Microsoft's go-amqp: a connection with one session, senders and
// receivers that speak api/amqp's Message, the $cbs put-token exchange,
// and the remote error of a refused link. It adds no IoT Hub knowledge of
// its own beyond $cbs; the callers name the addresses and properties.
//
// It is the one home of go-amqp (.ci/deps).
package amqplink

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/Azure/go-amqp"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
)

// Config says how to connect.
type Config struct {
	// Addr is the host:port dialled over TLS when Conn is nil.
	Addr string
	// Conn is an open transport (a WebSocket) to speak AMQP on instead.
	Conn net.Conn
	// HostName is the open's hostname.
	HostName string
	// TLS configures the dialled TLS connection.
	TLS *tls.Config
	// PlainUser and PlainPassword select SASL PLAIN; without them the
	// connection speaks AMQP with no SASL layer, as IoT Hub devices do.
	PlainUser, PlainPassword string
	// IdleTimeout asks the hub to send heartbeats. Zero means none.
	IdleTimeout time.Duration
}

// Conn is a connection and its session.
type Conn struct {
	conn *amqp.Conn
	sess *amqp.Session
}

// Dial connects and begins a session.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	opts := &amqp.ConnOptions{HostName: cfg.HostName, TLSConfig: cfg.TLS, IdleTimeout: cfg.IdleTimeout}
	if cfg.PlainUser != "" {
		opts.SASLType = amqp.SASLTypePlain(cfg.PlainUser, cfg.PlainPassword)
	}
	var (
		c   *amqp.Conn
		err error
	)
	if cfg.Conn != nil {
		c, err = amqp.NewConn(ctx, cfg.Conn, opts)
	} else {
		c, err = amqp.Dial(ctx, "amqps://"+cfg.Addr, opts)
	}
	if err != nil {
		return nil, err
	}
	s, err := c.NewSession(ctx, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &Conn{conn: c, sess: s}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.conn.Close() }

// Done is closed when the connection ends; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.conn.Done() }

// Err is why the connection ended, nil while it is open.
func (c *Conn) Err() error { return c.conn.Err() }

// LinkOptions configure a sender or receiver.
type LinkOptions struct {
	// Name is the link name; zero means a random one.
	Name string
	// Properties are the attach properties, their keys sent as symbols.
	Properties map[string]any
	// Settled makes a sender send pre-settled messages, so Send does not
	// wait for an outcome.
	Settled bool
	// Credit is a receiver's credit, renewed as messages are settled.
	// Zero means 1.
	Credit int32
}

// Sender sends messages.
type Sender struct{ s *amqp.Sender }

// NewSender attaches a sender to address.
func (c *Conn) NewSender(ctx context.Context, address string, o LinkOptions) (*Sender, error) {
	opts := &amqp.SenderOptions{Name: o.Name, Properties: o.Properties}
	if o.Settled {
		mode := amqp.SenderSettleModeSettled
		opts.SettlementMode = &mode
	}
	s, err := c.sess.NewSender(ctx, address, opts)
	if err != nil {
		return nil, err
	}
	return &Sender{s}, nil
}

// Send sends m and, unless the link is pre-settled, waits for the hub to
// accept it; a rejection is an *Error.
func (s *Sender) Send(ctx context.Context, m *wire.Message) error {
	msg, err := toLib(m)
	if err != nil {
		return err
	}
	return s.s.Send(ctx, msg, nil)
}

// Close detaches the sender.
func (s *Sender) Close(ctx context.Context) error { return s.s.Close(ctx) }

// Receiver receives messages.
type Receiver struct{ r *amqp.Receiver }

// NewReceiver attaches a receiver to address.
func (c *Conn) NewReceiver(ctx context.Context, address string, o LinkOptions) (*Receiver, error) {
	credit := o.Credit
	if credit == 0 {
		credit = 1
	}
	r, err := c.sess.NewReceiver(ctx, address, &amqp.ReceiverOptions{Name: o.Name, Properties: o.Properties, Credit: credit})
	if err != nil {
		return nil, err
	}
	return &Receiver{r}, nil
}

// Delivery is a received message, to settle with one of its methods
// unless it came pre-settled.
type Delivery struct {
	*wire.Message
	Tag []byte
	msg *amqp.Message
	r   *Receiver
}

// Receive waits for the next message.
func (r *Receiver) Receive(ctx context.Context) (*Delivery, error) {
	msg, err := r.r.Receive(ctx, nil)
	if err != nil {
		return nil, err
	}
	b, err := msg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	m, err := wire.UnmarshalMessage(b)
	if err != nil {
		return nil, err
	}
	return &Delivery{Message: m, Tag: msg.DeliveryTag, msg: msg, r: r}, nil
}

// Accept settles the delivery as accepted (complete).
func (d *Delivery) Accept(ctx context.Context) error { return d.r.r.AcceptMessage(ctx, d.msg) }

// Release settles it as released (abandon).
func (d *Delivery) Release(ctx context.Context) error { return d.r.r.ReleaseMessage(ctx, d.msg) }

// Reject settles it as rejected (reject).
func (d *Delivery) Reject(ctx context.Context) error { return d.r.r.RejectMessage(ctx, d.msg, nil) }

// Close detaches the receiver.
func (r *Receiver) Close(ctx context.Context) error { return r.r.Close(ctx) }

// toLib converts a message by its encoding, so every section and type
// survives as api/amqp wrote it.
func toLib(m *wire.Message) (*amqp.Message, error) {
	b, err := m.Marshal(nil)
	if err != nil {
		return nil, err
	}
	msg := new(amqp.Message)
	if err := msg.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return msg, nil
}

// Error is an error the remote peer sent: a refused attach, a detached
// link, a closed connection, or a rejected message.
type Error struct {
	Condition   string
	Description string
	Info        map[string]any
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Condition, e.Description)
}

// RemoteError is the remote error err carries, or nil.
func RemoteError(err error) *Error {
	var remote *amqp.Error
	switch le, ce := (*amqp.LinkError)(nil), (*amqp.ConnError)(nil); {
	case errors.As(err, &le) && le.RemoteErr != nil:
		remote = le.RemoteErr
	case errors.As(err, &ce) && ce.RemoteErr != nil:
		remote = ce.RemoteErr
	default:
		errors.As(err, &remote)
	}
	if remote == nil {
		return nil
	}
	return &Error{Condition: string(remote.Condition), Description: remote.Description, Info: remote.Info}
}

// PutToken puts token for audience on $cbs, over a sender and receiver
// pair it attaches for the exchange, and checks that the answer is 200.
func (c *Conn) PutToken(ctx context.Context, audience, token string) error {
	snd, err := c.NewSender(ctx, wire.CBSNode, LinkOptions{})
	if err != nil {
		return fmt.Errorf("attach %s: %w", wire.CBSNode, err)
	}
	defer snd.Close(ctx)
	rcv, err := c.NewReceiver(ctx, wire.CBSNode, LinkOptions{})
	if err != nil {
		return fmt.Errorf("attach %s: %w", wire.CBSNode, err)
	}
	defer rcv.Close(ctx)
	var id [16]byte
	rand.Read(id[:])
	if err := snd.Send(ctx, wire.PutToken(fmt.Sprintf("%x", id), audience, token)); err != nil {
		return fmt.Errorf("put-token: %w", err)
	}
	d, err := rcv.Receive(ctx)
	if err != nil {
		return fmt.Errorf("put-token: %w", err)
	}
	_ = d.Accept(ctx)
	if code, desc := wire.CBSStatus(d.Message); code != 200 {
		return &Error{Condition: "amqp:unauthorized-access", Description: fmt.Sprintf("put-token answered %d %s", code, desc)}
	}
	return nil
}
