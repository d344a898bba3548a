// Package iotservice is a service (back-end) client for the Azure IoT Hub
// REST API, api-version 2021-04-12: the identity registry, twins, direct
// methods and queries; cloud-to-device messages go over AMQP, as with the
// official SDKs. It authenticates with a shared access policy connection
// string and maps the hub's error responses back to *iothub.Error.
//
// It works against real Azure IoT Hub with the system's root CAs, or
// against the emulator given its CA file.
package iotservice

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/internal/cafile"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
)

// Options configures a Client. The zero value uses the system root CAs.
type Options struct {
	// CAFile is a PEM file of CAs to trust instead of the system roots.
	CAFile string
	// HTTPClient replaces the client's HTTP client (CAFile is then ignored).
	HTTPClient *http.Client
	// AMQPAddr is where cloud-to-device messages go (host:port). Zero means
	// the hub's host name on port 5671.
	AMQPAddr string
}

// Client calls the service API of one hub.
type Client struct {
	cs       connstr.Service
	http     *http.Client
	base     string
	tls      *tls.Config // for AMQP; nil means the system roots
	amqpAddr string

	mu      sync.Mutex
	tok     string    // guarded by mu; the current SAS token
	renewAt time.Time // guarded by mu; when to sign a new one

	amqpMu  sync.Mutex
	amqp    *amqpSession // guarded by amqpMu; the open AMQP connection, if any
	amqpTok string       // guarded by amqpMu; the token it was authorised with
}

// New returns a client for the hub of cs.
func New(cs connstr.Service, opts Options) (*Client, error) {
	hc := opts.HTTPClient
	var tlsCfg *tls.Config
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Keep a connection per concurrent caller: the default of two idle
		// connections makes concurrent callers pay a TLS handshake each.
		tr.MaxIdleConnsPerHost = 128
		if opts.CAFile != "" {
			pool, err := cafile.Pool(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("iotservice: %w", err)
			}
			tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			tr.TLSClientConfig = tlsCfg
		}
		hc = &http.Client{Transport: tr}
	}
	c := &Client{cs: cs, http: hc, base: "https://" + cs.HostName, tls: tlsCfg, amqpAddr: opts.AMQPAddr}
	if c.amqpAddr == "" {
		host := cs.HostName
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		c.amqpAddr = net.JoinHostPort(host, "5671")
	}
	return c, nil
}

// token returns a SAS token for the hub valid for an hour, signing a new
// one when the current one has less than 15 minutes left (service-api §1.1).
func (c *Client) token() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.tok != "" && now.Before(c.renewAt) {
		return c.tok, nil
	}
	t, err := sas.New(c.cs.HostName, c.cs.SharedAccessKeyName, c.cs.SharedAccessKey, now.Add(time.Hour))
	if err != nil {
		return "", err
	}
	c.tok, c.renewAt = t.String(), now.Add(45*time.Minute)
	return c.tok, nil
}

// request is one REST call.
type request struct {
	method, path string
	query        url.Values
	header       http.Header
	body         any
	out          any
	// errorBody is an error code whose body still decodes into out.
	errorBody iothub.ErrorCode
}

// do sends r and decodes a 2xx answer into r.out, or returns the hub's
// error as *iothub.Error.
func (c *Client) do(ctx context.Context, r request) (http.Header, error) {
	q := r.query
	if q == nil {
		q = url.Values{}
	}
	q.Set("api-version", iothub.APIVersion)
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path+"?"+q.Encode(), body)
	if err != nil {
		return nil, err
	}
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("iotservice: %s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("iotservice: %s %s: %w", r.method, r.path, err)
	}
	errorBody := r.errorBody != 0 && resp.Header.Get(iothub.HeaderErrorCode) == r.errorBody.String()
	if resp.StatusCode >= 300 && !errorBody {
		return resp.Header, iothub.ParseErrorResponse(resp.StatusCode, resp.Header, data)
	}
	if r.out != nil && len(data) > 0 {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if err := d.Decode(r.out); err != nil {
			return nil, fmt.Errorf("iotservice: %s %s: decode response: %w", r.method, r.path, err)
		}
	}
	return resp.Header, nil
}

func devicePath(id string) string { return "/devices/" + url.PathEscape(id) }
func twinPath(id string) string   { return "/twins/" + url.PathEscape(id) }

func ifMatch(etag string) http.Header {
	if etag == "" {
		return nil
	}
	if etag != "*" && etag[0] != '"' {
		etag = `"` + etag + `"`
	}
	if etag == "*" {
		etag = `"*"`
	}
	return http.Header{"If-Match": {etag}}
}

// CreateDevice registers a device; empty keys are generated by the hub.
func (c *Client) CreateDevice(ctx context.Context, d iothub.Device) (iothub.Device, error) {
	if d.Authentication.Type == "" {
		d.Authentication.Type = iothub.AuthSAS
	}
	var out iothub.Device
	_, err := c.do(ctx, request{method: http.MethodPut, path: devicePath(d.DeviceID), body: d, out: &out})
	return out, err
}

// UpdateDevice replaces a device; etag "" or "*" replaces unconditionally.
func (c *Client) UpdateDevice(ctx context.Context, d iothub.Device, etag string) (iothub.Device, error) {
	if etag == "" {
		etag = "*"
	}
	var out iothub.Device
	_, err := c.do(ctx, request{method: http.MethodPut, path: devicePath(d.DeviceID), body: d, header: ifMatch(etag), out: &out})
	return out, err
}

// Device returns a device identity.
func (c *Client) Device(ctx context.Context, id string) (iothub.Device, error) {
	var out iothub.Device
	_, err := c.do(ctx, request{method: http.MethodGet, path: devicePath(id), out: &out})
	return out, err
}

// Devices lists up to top devices (0: the hub's maximum, 1000).
func (c *Client) Devices(ctx context.Context, top int) ([]iothub.Device, error) {
	var out []iothub.Device
	q := url.Values{}
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/devices", query: q, out: &out})
	return out, err
}

// DeleteDevice deletes a device unconditionally.
func (c *Client) DeleteDevice(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: devicePath(id), header: ifMatch("*")})
	return err
}

// Bulk applies up to 100 registry entries in one request (POST /devices).
// Entries are applied one by one: when some fail, the result lists them
// and the error is a BulkRegistryOperationFailure.
func (c *Client) Bulk(ctx context.Context, entries []iothub.ExportImportDevice) (iothub.BulkResult, error) {
	var out iothub.BulkResult
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/devices", body: entries, out: &out, errorBody: iothub.BulkRegistryOperationFailure}); err != nil {
		return out, err
	}
	if !out.IsSuccessful {
		msg := fmt.Sprintf("%d of %d entries failed", len(out.Errors), len(entries))
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			msg += fmt.Sprintf("; %s: %s %s", e.DeviceID, e.ErrorCode, e.ErrorStatus)
		}
		return out, &iothub.Error{Code: iothub.BulkRegistryOperationFailure, Message: msg}
	}
	return out, nil
}

func modulePath(id, mid string) string { return devicePath(id) + "/modules/" + url.PathEscape(mid) }

// CreateModule registers a module on a device; empty keys are generated.
func (c *Client) CreateModule(ctx context.Context, m iothub.Module) (iothub.Module, error) {
	if m.Authentication.Type == "" {
		m.Authentication.Type = iothub.AuthSAS
	}
	var out iothub.Module
	_, err := c.do(ctx, request{method: http.MethodPut, path: modulePath(m.DeviceID, m.ModuleID), body: m, out: &out})
	return out, err
}

// Module returns a module identity.
func (c *Client) Module(ctx context.Context, id, mid string) (iothub.Module, error) {
	var out iothub.Module
	_, err := c.do(ctx, request{method: http.MethodGet, path: modulePath(id, mid), out: &out})
	return out, err
}

// Modules lists a device's modules.
func (c *Client) Modules(ctx context.Context, id string) ([]iothub.Module, error) {
	var out []iothub.Module
	_, err := c.do(ctx, request{method: http.MethodGet, path: devicePath(id) + "/modules", out: &out})
	return out, err
}

// DeleteModule deletes a module unconditionally.
func (c *Client) DeleteModule(ctx context.Context, id, mid string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: modulePath(id, mid), header: ifMatch("*")})
	return err
}

// ModuleTwin returns a module twin.
func (c *Client) ModuleTwin(ctx context.Context, id, mid string) (iothub.Twin, error) {
	var out iothub.Twin
	_, err := c.do(ctx, request{method: http.MethodGet, path: twinPath(id) + "/modules/" + url.PathEscape(mid), out: &out})
	return out, err
}

// InvokeModuleMethod calls a direct method on a module.
func (c *Client) InvokeModuleMethod(ctx context.Context, id, mid string, req iothub.MethodRequest) (iothub.MethodResult, error) {
	return c.invoke(ctx, twinPath(id)+"/modules/"+url.PathEscape(mid)+"/methods", req)
}

// Twin returns a device twin.
func (c *Client) Twin(ctx context.Context, id string) (iothub.Twin, error) {
	var out iothub.Twin
	_, err := c.do(ctx, request{method: http.MethodGet, path: twinPath(id), out: &out})
	return out, err
}

// UpdateTwin merges patch into a twin; etag "" updates unconditionally,
// otherwise a stale etag is a PreconditionFailed error.
func (c *Client) UpdateTwin(ctx context.Context, id string, patch iothub.TwinPatch, etag string) (iothub.Twin, error) {
	if etag == "" {
		etag = "*"
	}
	var out iothub.Twin
	_, err := c.do(ctx, request{method: http.MethodPatch, path: twinPath(id), body: patch, header: ifMatch(etag), out: &out})
	return out, err
}

// InvokeMethod calls a direct method and returns the device's status and
// payload. The HTTP client waits for the method's timeouts plus a margin.
func (c *Client) InvokeMethod(ctx context.Context, id string, req iothub.MethodRequest) (iothub.MethodResult, error) {
	return c.invoke(ctx, twinPath(id)+"/methods", req)
}

func (c *Client) invoke(ctx context.Context, path string, req iothub.MethodRequest) (iothub.MethodResult, error) {
	resp, conn := req.Timeouts()
	ctx, cancel := context.WithTimeout(ctx, resp+conn+15*time.Second)
	defer cancel()
	if req.Payload == nil {
		req.Payload = json.RawMessage("null")
	}
	var out iothub.MethodResult
	_, err := c.do(ctx, request{method: http.MethodPost, path: path, body: req, out: &out})
	return out, err
}

// Query runs an IoT Hub query and returns every row, following
// continuation tokens; pageSize 0 lets the hub choose (service-api §6.1).
func (c *Client) Query(ctx context.Context, query string, pageSize int) ([]json.RawMessage, error) {
	return c.pages(ctx, request{method: http.MethodPost, path: "/devices/query", body: iothub.QuerySpec{Query: query}}, pageSize)
}

// pages sends r once per page, following x-ms-continuation until the hub
// stops sending it, and returns every row.
func (c *Client) pages(ctx context.Context, r request, pageSize int) ([]json.RawMessage, error) {
	var all []json.RawMessage
	cont := ""
	for {
		r.header = http.Header{}
		if pageSize > 0 {
			r.header.Set(iothub.HeaderMaxItemCount, strconv.Itoa(pageSize))
		}
		if cont != "" {
			r.header.Set(iothub.HeaderContinuation, cont)
		}
		var page []json.RawMessage
		r.out = &page
		rh, err := c.do(ctx, r)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if cont = rh.Get(iothub.HeaderContinuation); cont == "" {
			return all, nil
		}
	}
}

func jobPath(id string) string { return "/jobs/v2/" + url.PathEscape(id) }

// ScheduleJob creates a scheduleDeviceMethod or scheduleUpdateTwin job
// (service-api §7.1).
func (c *Client) ScheduleJob(ctx context.Context, j iothub.Job) (iothub.Job, error) {
	var out iothub.Job
	_, err := c.do(ctx, request{method: http.MethodPut, path: jobPath(j.JobID), body: j, out: &out})
	return out, err
}

// Job returns a job with its statistics.
func (c *Client) Job(ctx context.Context, id string) (iothub.Job, error) {
	var out iothub.Job
	_, err := c.do(ctx, request{method: http.MethodGet, path: jobPath(id), out: &out})
	return out, err
}

// CancelJob cancels a job.
func (c *Client) CancelJob(ctx context.Context, id string) (iothub.Job, error) {
	var out iothub.Job
	_, err := c.do(ctx, request{method: http.MethodPost, path: jobPath(id) + "/cancel", out: &out})
	return out, err
}

// Jobs lists jobs, optionally of one type and status.
func (c *Client) Jobs(ctx context.Context, jobType iothub.JobType, status iothub.JobStatus) ([]iothub.Job, error) {
	q := url.Values{}
	if jobType != "" {
		q.Set("jobType", string(jobType))
	}
	if status != "" {
		q.Set("jobStatus", string(status))
	}
	rows, err := c.pages(ctx, request{method: http.MethodGet, path: "/jobs/v2/query", query: q}, 0)
	if err != nil {
		return nil, err
	}
	out := make([]iothub.Job, len(rows))
	for i, r := range rows {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, fmt.Errorf("iotservice: decode job: %w", err)
		}
	}
	return out, nil
}

// PurgeC2D deletes a device's pending cloud-to-device messages and returns
// how many there were.
func (c *Client) PurgeC2D(ctx context.Context, id string) (int, error) {
	var out struct {
		TotalMessagesPurged int `json:"totalMessagesPurged"`
	}
	_, err := c.do(ctx, request{method: http.MethodDelete, path: devicePath(id) + "/commands", out: &out})
	return out.TotalMessagesPurged, err
}

// Message is a device-to-cloud message kept by the emulator.
type Message struct {
	DeviceID     string            `json:"deviceId"`
	Properties   map[string]string `json:"properties"`
	Body         []byte            `json:"body"`
	EnqueuedTime time.Time         `json:"enqueuedTime"`
}

// Messages returns a device's recent telemetry. It is an emulator-only
// endpoint: real IoT Hub delivers telemetry through its Event Hubs
// endpoint instead.
func (c *Client) Messages(ctx context.Context, id string) ([]Message, error) {
	var out []Message
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/emulator" + devicePath(id) + "/messages", out: &out})
	return out, err
}
