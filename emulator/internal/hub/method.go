package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// InvokeMethod calls a direct method on a device and waits for its answer
// (service-api §5.2). It waits up to the connect timeout for the device to
// be connected and subscribed to methods (else DeviceNotOnline), sends the
// request to that device's connection only, and waits up to the response
// timeout (else GatewayTimeout). Whatever status the device answers is
// returned as a result, not an error.
func (h *Hub) InvokeMethod(ctx context.Context, deviceID string, req iothub.MethodRequest) (iothub.MethodResult, error) {
	res, err := h.invokeMethod(ctx, deviceID, req)
	if err != nil {
		code := iothub.CodeOf(err)
		h.Record(ActivityMethod, deviceID, fmt.Sprintf("%s: %s", req.MethodName, code), code.HTTPStatus())
	} else {
		h.Record(ActivityMethod, deviceID, fmt.Sprintf("%s: answered %d", req.MethodName, res.Status), res.Status)
	}
	return res, err
}

func (h *Hub) invokeMethod(ctx context.Context, deviceID string, req iothub.MethodRequest) (iothub.MethodResult, error) {
	if err := req.Validate(); err != nil {
		return iothub.MethodResult{}, err
	}
	e, err := h.entry(deviceID)
	if err != nil {
		return iothub.MethodResult{}, err
	}
	respTimeout, connTimeout := req.Timeouts()
	c, err := h.waitForMethods(ctx, e, connTimeout)
	if err != nil {
		return iothub.MethodResult{}, err
	}
	rid := c.link.NextRequestID()
	ch := c.pend(rid)
	defer c.unpend(rid)
	payload := []byte(req.Payload)
	if len(payload) == 0 {
		// The Node SDK fails on an empty body; the hub sends null.
		payload = []byte("null")
	}
	if err := c.link.SendMethod(req.MethodName, rid, payload); err != nil {
		return iothub.MethodResult{}, notOnline(connTimeout)
	}
	wait := respTimeout - h.opts.MethodTimeoutMargin
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-t.C:
		h.log.Info("method timed out", "device", deviceID, "method", req.MethodName, "rid", rid)
		return iothub.MethodResult{}, &iothub.Error{Code: iothub.GatewayTimeout,
			Message: "Timed out waiting for the response from device.", Info: map[string]string{}}
	case <-ctx.Done():
		return iothub.MethodResult{}, ctx.Err()
	}
}

func (h *Hub) waitForMethods(ctx context.Context, e *entry, timeout time.Duration) (*Conn, error) {
	var deadline <-chan time.Time
	for {
		c, changed := e.current()
		if c != nil && c.Subscribed(SubMethods) {
			return c, nil
		}
		if timeout == 0 {
			return nil, notOnline(timeout)
		}
		if deadline == nil {
			t := time.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-changed:
		case <-deadline:
			return nil, notOnline(timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func notOnline(timeout time.Duration) error {
	s := int(timeout.Seconds())
	return &iothub.Error{
		Code:    iothub.DeviceNotOnline,
		Message: "The operation failed because the requested device isn't online or hasn't registered the direct method callback. To learn more, see https://aka.ms/iothub404103",
		Info:    map[string]string{"timeout": fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)},
	}
}

// pend registers a method call made on this connection.
func (c *Conn) pend(rid string) chan iothub.MethodResult {
	ch := make(chan iothub.MethodResult, 1)
	c.callsMu.Lock()
	if c.calls == nil {
		c.calls = map[string]chan iothub.MethodResult{}
	}
	c.calls[rid] = ch
	c.callsMu.Unlock()
	return ch
}

func (c *Conn) unpend(rid string) {
	c.callsMu.Lock()
	delete(c.calls, rid)
	c.callsMu.Unlock()
}

// CompleteMethod delivers a device's answer to the method call rid made on
// this connection. An answer to no pending call (late, unknown or meant
// for another connection) is dropped. A body that is not JSON is passed on
// as a JSON string; an empty body as null (service-api §5.2).
func (c *Conn) CompleteMethod(rid string, status int, body []byte) {
	c.Touch()
	c.callsMu.Lock()
	ch, ok := c.calls[rid]
	c.callsMu.Unlock()
	if !ok {
		c.hub.log.Debug("method response for no pending call", "device", c.e.id, "rid", rid)
		return
	}
	payload := json.RawMessage("null")
	if len(body) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, body); err == nil {
			payload = b.Bytes()
		} else {
			c.hub.log.Warn("method response body is not JSON; passing it on as a string", "device", c.e.id, "rid", rid)
			payload, _ = json.Marshal(string(body))
		}
	}
	select {
	case ch <- iothub.MethodResult{Status: status, Payload: payload}:
	default:
	}
}
