package iotservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// FileNotificationsNode is where the service receives file upload
// notifications (next-wave-protocols §4.4).
const FileNotificationsNode = "/messages/serviceBound/filenotifications"

// ErrStop, returned by a ReceiveFileNotifications callback, ends the
// receive without an error.
var ErrStop = errors.New("iotservice: stop")

// ReceiveFileNotifications receives file upload notifications over AMQP,
// as the SDKs' getFileNotificationReceiver does, and calls fn for each;
// a notification is accepted (completed) once fn returns nil, and left to
// the hub to send again otherwise. It returns when ctx ends, fn returns
// ErrStop (both nil), fn fails, or the connection does.
func (c *Client) ReceiveFileNotifications(ctx context.Context, fn func(iothub.FileNotification) error) error {
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
		return fmt.Errorf("iotservice: amqp: %w", err)
	}
	const handle, window = uint32(c2dHandle), uint32(16)
	first := uint8(0)
	a := &amqp.Attach{Name: "file-notifications", Handle: handle, Role: amqp.RoleReceiver, RcvSettleMode: &first,
		Source: &amqp.Source{Address: FileNotificationsNode}, Target: &amqp.Target{Address: "iotservice"}}
	if err := s.send1(a, nil); err != nil {
		return err
	}
	if reply, err := await[*amqp.Attach](s); err != nil {
		return fmt.Errorf("iotservice: amqp: %w", err)
	} else if reply.Source == nil {
		_, err := await[*amqp.Detach](s)
		return fmt.Errorf("iotservice: the hub refused the file notification link: %w", err)
	}
	// The reader has the connection from here; writes (dispositions,
	// credit, heartbeats) share a lock.
	_ = s.conn.SetDeadline(time.Time{})
	var wmu sync.Mutex
	write := func(p amqp.Performative) error {
		wmu.Lock()
		defer wmu.Unlock()
		return s.send1(p, nil)
	}
	received := uint32(0)
	flow := func() error {
		credit := window
		return write(&amqp.Flow{IncomingWindow: 100, OutgoingWindow: 100, Handle: u32p(handle), DeliveryCount: u32p(received), LinkCredit: &credit})
	}
	if err := flow(); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		beat := time.NewTicker(30 * time.Second) // well within the hub's idle time-out
		defer beat.Stop()
		for {
			select {
			case <-ctx.Done():
				s.conn.Close()
				return
			case <-stop:
				return
			case <-beat.C:
				wmu.Lock()
				_, _ = s.conn.Write(amqp.Heartbeat)
				wmu.Unlock()
			}
		}
	}()
	for {
		t, payload, err := awaitPayload[*amqp.Transfer](s)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("iotservice: amqp: %w", err)
		}
		if t.Handle != handle || t.DeliveryID == nil {
			continue
		}
		received++
		m, err := amqp.UnmarshalMessage(payload)
		if err != nil {
			return fmt.Errorf("iotservice: a file notification: %w", err)
		}
		var n iothub.FileNotification
		if err := json.Unmarshal(m.Body(), &n); err != nil {
			return fmt.Errorf("iotservice: a file notification: %w", err)
		}
		ferr := fn(n)
		var state amqp.DeliveryState = &amqp.Accepted{}
		if ferr != nil && !errors.Is(ferr, ErrStop) {
			state = &amqp.Released{}
		}
		if err := write(&amqp.Disposition{Role: amqp.RoleReceiver, First: *t.DeliveryID, Settled: true, State: state}); err != nil {
			return err
		}
		switch {
		case errors.Is(ferr, ErrStop):
			return nil
		case ferr != nil:
			return ferr
		}
		if err := flow(); err != nil {
			return err
		}
	}
}

func u32p(v uint32) *uint32 { return &v }
