package iotservice

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

func digitalTwinPath(id string) string { return "/digitaltwins/" + url.PathEscape(id) }

// DigitalTwin returns a device's IoT Plug and Play digital twin.
func (c *Client) DigitalTwin(ctx context.Context, id string) (map[string]any, error) {
	var out map[string]any
	_, err := c.do(ctx, request{method: http.MethodGet, path: digitalTwinPath(id), out: &out})
	return out, err
}

// UpdateDigitalTwin applies a JSON Patch to a digital twin; etag ""
// updates unconditionally.
func (c *Client) UpdateDigitalTwin(ctx context.Context, id string, ops []iothub.JSONPatchOp, etag string) error {
	_, err := c.do(ctx, request{method: http.MethodPatch, path: digitalTwinPath(id), body: ops, header: ifMatch(etag)})
	return err
}

// CommandResult is a command's answer: the device's status and payload.
type CommandResult struct {
	Status  int
	Payload json.RawMessage
}

// InvokeCommand invokes a command of a digital twin, of a component when
// component is not empty, with the hub's default timeouts.
func (c *Client) InvokeCommand(ctx context.Context, id, component, command string, payload any) (CommandResult, error) {
	path := digitalTwinPath(id)
	if component != "" {
		path += "/components/" + url.PathEscape(component)
	}
	path += "/commands/" + url.PathEscape(command)
	var out json.RawMessage
	h, err := c.do(ctx, request{method: http.MethodPost, path: path, body: payload, out: &out})
	if err != nil {
		return CommandResult{}, err
	}
	status, _ := strconv.Atoi(h.Get("x-ms-command-statuscode"))
	return CommandResult{Status: status, Payload: out}, nil
}
