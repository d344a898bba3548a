package iotdevice

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/httpdevice"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// httpsTransport is the device HTTPS API (next-wave-protocols §3): each
// event one POST, and, with an OnC2D handler, a poll every PollInterval
// that drains the queue of cloud-to-device messages, each completed with
// a DELETE of its lock once the handler returns. There is no connection:
// every request carries a fresh token.
type httpsTransport struct {
	c    *Client
	hc   *http.Client
	open atomic.Bool
}

func newHTTPS(c *Client) (*httpsTransport, error) {
	hc, err := c.httpsClient()
	if err != nil {
		return nil, err
	}
	return &httpsTransport{c: c, hc: hc}, nil
}

// connect polls once, so a wrong key or an unknown device fails here, and
// starts polling.
func (t *httpsTransport) connect(ctx context.Context) error {
	if t.c.wantsC2D() {
		if err := t.poll(ctx); err != nil {
			return err
		}
		t.c.wg.Add(1)
		go t.pollEvery()
	}
	t.open.Store(true)
	return nil
}

func (t *httpsTransport) close()          { t.open.Store(false); t.hc.CloseIdleConnections() }
func (t *httpsTransport) connected() bool { return t.open.Load() }

func (t *httpsTransport) pollEvery() {
	defer t.c.wg.Done()
	tick := time.NewTicker(t.c.opts.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.c.closed:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := t.poll(ctx); err != nil {
			t.c.log.Warn("cloud-to-device poll failed", "error", err)
		}
		cancel()
	}
}

// poll receives messages until the hub answers 204.
func (t *httpsTransport) poll(ctx context.Context) error {
	path := "/messages/devicebound"
	to := [][2]string{{httpdevice.To, "/devices/" + t.c.cs.DeviceID + path}}
	for {
		status, body, header, err := t.c.hubDo(ctx, t.hc, http.MethodGet, path, to, nil)
		if err != nil || status == http.StatusNoContent {
			return err
		}
		lock, props := httpdevice.ParseC2D(header)
		t.c.deliverC2D(body, props, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, _, _, err := t.c.hubDo(ctx, t.hc, http.MethodDelete, path+"/"+url.PathEscape(lock), [][2]string{{"If-Match", `"` + lock + `"`}}, nil); err != nil {
				t.c.log.Warn("cloud-to-device message not completed", "error", err)
			}
		})
	}
}

func (t *httpsTransport) twin(context.Context, []byte) (twinResult, error) {
	return twinResult{}, ErrNotSupported
}

// sendEvent POSTs the event; the hub answers 204 once it is stored.
func (t *httpsTransport) sendEvent(ctx context.Context, body []byte, props topic.Properties) error {
	path := "/messages/events"
	headers := append(httpdevice.EventHeaders(props), [2]string{httpdevice.To, "/devices/" + t.c.cs.DeviceID + path})
	if body == nil {
		body = []byte{}
	}
	_, _, _, err := t.c.hubDo(ctx, t.hc, http.MethodPost, path, headers, body)
	return err
}
