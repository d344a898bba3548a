package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

type callKey struct {
	c   *Conn
	rid string
}

// InvokeMethod calls a direct method on a device and waits for its answer
// (service-api §5.2). It waits up to the connect timeout for the device to
// be connected and subscribed to methods (else DeviceNotOnline), sends the
// request to that device's connection only, and waits up to the response
// timeout (else GatewayTimeout). Whatever status the device answers is
// returned as a result, not an error.
func (h *Hub) InvokeMethod(ctx context.Context, deviceID string, req iothub.MethodRequest) (iothub.MethodResult, error) {
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
	ch := make(chan iothub.MethodResult, 1)
	key := callKey{c, rid}
	h.calls.Store(key, ch)
	defer h.calls.Delete(key)
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
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c, changed := e.current()
		if c != nil && c.Subscribed(SubMethods) {
			return c, nil
		}
		if timeout == 0 {
			return nil, notOnline(timeout)
		}
		select {
		case <-changed:
		case <-deadline.C:
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

// CompleteMethod delivers a device's answer to the method call rid made on
// this connection. An answer to no pending call (late, unknown or meant
// for another connection) is dropped. A body that is not JSON is passed on
// as a JSON string; an empty body as null (service-api §5.2).
func (c *Conn) CompleteMethod(rid string, status int, body []byte) {
	c.Touch()
	v, ok := c.hub.calls.Load(callKey{c, rid})
	if !ok {
		c.hub.log.Debug("method response for no pending call", "device", c.e.id, "rid", rid)
		return
	}
	payload := json.RawMessage("null")
	switch {
	case len(body) == 0:
	case json.Valid(body):
		payload = json.RawMessage(body)
	default:
		c.hub.log.Warn("method response body is not JSON; passing it on as a string", "device", c.e.id, "rid", rid)
		payload, _ = json.Marshal(string(body))
	}
	select {
	case v.(chan iothub.MethodResult) <- iothub.MethodResult{Status: status, Payload: payload}:
	default:
	}
}
