package iotservice

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

func configurationPath(id string) string { return "/configurations/" + url.PathEscape(id) }

// CreateConfiguration creates an automatic device configuration.
func (c *Client) CreateConfiguration(ctx context.Context, cfg iothub.Configuration) (iothub.Configuration, error) {
	var out iothub.Configuration
	_, err := c.do(ctx, request{method: http.MethodPut, path: configurationPath(cfg.ID), body: cfg, out: &out})
	return out, err
}

// UpdateConfiguration changes a configuration's target condition,
// priority, labels or metrics; etag "" or "*" updates unconditionally.
func (c *Client) UpdateConfiguration(ctx context.Context, cfg iothub.Configuration, etag string) (iothub.Configuration, error) {
	if etag == "" {
		etag = "*"
	}
	var out iothub.Configuration
	_, err := c.do(ctx, request{method: http.MethodPut, path: configurationPath(cfg.ID), body: cfg, header: ifMatch(etag), out: &out})
	return out, err
}

// Configuration returns a configuration with its current metrics.
func (c *Client) Configuration(ctx context.Context, id string) (iothub.Configuration, error) {
	var out iothub.Configuration
	_, err := c.do(ctx, request{method: http.MethodGet, path: configurationPath(id), out: &out})
	return out, err
}

// Configurations lists up to top configurations (0: all).
func (c *Client) Configurations(ctx context.Context, top int) ([]iothub.Configuration, error) {
	var out []iothub.Configuration
	q := url.Values{}
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/configurations", query: q, out: &out})
	return out, err
}

// DeleteConfiguration deletes a configuration; the desired properties it
// applied stay.
func (c *Client) DeleteConfiguration(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: configurationPath(id)})
	return err
}

// TestConfigurationQueries checks a target condition and metric queries.
func (c *Client) TestConfigurationQueries(ctx context.Context, t iothub.ConfigurationQueriesTest) (iothub.ConfigurationQueriesTestResult, error) {
	var out iothub.ConfigurationQueriesTestResult
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/configurations/testQueries", body: t, out: &out})
	return out, err
}
