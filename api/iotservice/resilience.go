package iotservice

import (
	"context"
	"net/http"
	"net/url"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// The emulator-only resilience API (/emulator/tier, /emulator/faults):
// real IoT Hub answers these with 404.

// Tier returns the tier the emulator emulates, with its refusals so far.
func (c *Client) Tier(ctx context.Context) (iothub.TierSettings, error) {
	var out iothub.TierSettings
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/emulator/tier", out: &out})
	return out, err
}

// SetTier sets the tier to emulate; a zero Tier turns emulation off.
func (c *Client) SetTier(ctx context.Context, t iothub.TierSettings) (iothub.TierSettings, error) {
	var out iothub.TierSettings
	_, err := c.do(ctx, request{method: http.MethodPut, path: "/emulator/tier", body: t, out: &out})
	return out, err
}

// AddFault starts a fault.
func (c *Client) AddFault(ctx context.Context, f iothub.Fault) (iothub.Fault, error) {
	var out iothub.Fault
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/emulator/faults", body: f, out: &out})
	return out, err
}

// Faults lists the faults, newest last.
func (c *Client) Faults(ctx context.Context) ([]iothub.Fault, error) {
	var out []iothub.Fault
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/emulator/faults", out: &out})
	return out, err
}

// ClearFault ends a fault; an empty id ends them all.
func (c *Client) ClearFault(ctx context.Context, id string) error {
	path := "/emulator/faults"
	if id != "" {
		path += "/" + url.PathEscape(id)
	}
	_, err := c.do(ctx, request{method: http.MethodDelete, path: path})
	return err
}
