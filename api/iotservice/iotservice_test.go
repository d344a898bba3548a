package iotservice_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
)

const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// seen is one request as it arrived.
type seen struct {
	method, path, rawQuery, body string
	header                       http.Header
}

// recorder is an HTTPS server that records requests and answers with the
// next canned response.
type recorder struct {
	mu      sync.Mutex
	reqs    []seen
	answers []func(w http.ResponseWriter)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b), r.Header.Clone()})
	answer := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write([]byte(`{}`))
	}
	if len(rec.answers) > 0 {
		answer, rec.answers = rec.answers[0], rec.answers[1:]
	}
	rec.mu.Unlock()
	answer(w)
}

func jsonAnswer(status int, body string, headers ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
}

func start(t *testing.T) (*recorder, *iotservice.Client, string) {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewTLSServer(rec)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	c, err := iotservice.New(connstr.Service{HostName: host, SharedAccessKeyName: "iothubowner", SharedAccessKey: key},
		iotservice.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return rec, c, host
}

// Ensure that the client sends exactly what service-api §0, §3, §4 and §5
// describe: paths with escaped ids, api-version 2021-04-12, a policy SAS
// token scoped to the hub, JSON content type, quoted If-Match and bodies.
func TestWireFormat(t *testing.T) {
	rec, c, host := start(t)
	ctx := context.Background()
	c.CreateDevice(ctx, iothub.Device{DeviceID: "dev#1"})
	c.UpdateTwin(ctx, "dev#1", iothub.NewTwinPatch(nil, map[string]any{"telemetryInterval": 10}), "AAAAAAAAAAE=")
	c.InvokeMethod(ctx, "dev#1", iothub.MethodRequest{MethodName: "rebootDevice"})
	c.DeleteDevice(ctx, "dev#1")
	c.ScheduleJob(ctx, iothub.Job{JobID: "j1", Type: iothub.JobScheduleUpdateTwin, QueryCondition: "*", UpdateTwin: &iothub.TwinPatch{ETag: "*", Tags: map[string]any{"a": 1}}})
	want := []struct{ method, path, ifMatch, body string }{
		{"PUT", "/devices/dev%231", "", `"deviceId":"dev#1"`},
		{"PATCH", "/twins/dev%231", `"AAAAAAAAAAE="`, `{"properties":{"desired":{"telemetryInterval":10}}}`},
		{"POST", "/twins/dev%231/methods", "", `{"methodName":"rebootDevice","payload":null}`},
		{"DELETE", "/devices/dev%231", `"*"`, ``},
		{"PUT", "/jobs/v2/j1", "", `"updateTwin":{"etag":"*","tags":{"a":1}}`},
	}
	if len(rec.reqs) != len(want) {
		t.Fatalf("%d requests, want %d", len(rec.reqs), len(want))
	}
	for i, w := range want {
		r := rec.reqs[i]
		if r.method != w.method || r.path != w.path || r.rawQuery != "api-version=2021-04-12" {
			t.Errorf("request %d: %s %s?%s, want %s %s?api-version=2021-04-12", i, r.method, r.path, r.rawQuery, w.method, w.path)
		}
		if got := r.header.Get("If-Match"); got != w.ifMatch {
			t.Errorf("request %d: If-Match %q, want %q", i, got, w.ifMatch)
		}
		if !strings.Contains(r.body, w.body) {
			t.Errorf("request %d: body %s, want it to contain %s", i, r.body, w.body)
		}
		if w.body != "" && r.header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("request %d: Content-Type %q", i, r.header.Get("Content-Type"))
		}
		tok, err := sas.Parse(r.header.Get("Authorization"))
		if err != nil || tok.KeyName != "iothubowner" || tok.Resource != sas.Escape(host) || !strings.HasPrefix(r.header.Get("Authorization"), "SharedAccessSignature sr=") {
			t.Errorf("request %d: Authorization %q (%v)", i, r.header.Get("Authorization"), err)
		}
		if err := tok.Verify(time.Now(), 0, key); err != nil {
			t.Errorf("request %d: token does not verify: %v", i, err)
		}
	}
}

// Ensure that both error envelopes come back as *iothub.Error with the
// hub's code.
func TestErrors(t *testing.T) {
	rec, c, _ := start(t)
	rec.answers = append(rec.answers,
		jsonAnswer(404, `{"Message":"ErrorCode:DeviceNotFound;dev1","ExceptionMessage":"Tracking ID:x-G:0-TimeStamp:01/01/2024 00:00:00"}`, "iothub-errorcode", "DeviceNotFound"),
		jsonAnswer(504, `{"Message":"{\"errorCode\":504101,\"message\":\"Timed out waiting for the response from device.\"}","ExceptionMessage":""}`, "iothub-errorcode", "GatewayTimeout"))
	ctx := context.Background()
	_, err := c.Device(ctx, "dev1")
	if iothub.CodeOf(err) != iothub.DeviceNotFound {
		t.Fatalf("got %v", err)
	}
	_, err = c.InvokeMethod(ctx, "dev1", iothub.MethodRequest{MethodName: "m"})
	if iothub.CodeOf(err) != iothub.GatewayTimeout || !strings.Contains(err.Error(), "Timed out") {
		t.Fatalf("got %v", err)
	}
}

// Ensure that Query follows x-ms-continuation and stops when it is absent,
// repeating the query body and sending the page size (service-api §6.1).
func TestQueryPaging(t *testing.T) {
	rec, c, _ := start(t)
	rec.answers = append(rec.answers,
		jsonAnswer(200, `[{"deviceId":"a"},{"deviceId":"b"}]`, "x-ms-continuation", "page2", "x-ms-item-type", "Twin"),
		jsonAnswer(200, `[{"deviceId":"c"}]`, "x-ms-item-type", "Twin"))
	rows, err := c.Query(context.Background(), "SELECT * FROM devices", 2)
	if err != nil || len(rows) != 3 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	if len(rec.reqs) != 2 || rec.reqs[1].header.Get("x-ms-continuation") != "page2" || rec.reqs[0].header.Get("x-ms-continuation") != "" {
		t.Fatalf("continuation headers: %q %q", rec.reqs[0].header.Get("x-ms-continuation"), rec.reqs[1].header.Get("x-ms-continuation"))
	}
	for _, r := range rec.reqs {
		var q iothub.QuerySpec
		if json.Unmarshal([]byte(r.body), &q) != nil || q.Query != "SELECT * FROM devices" || r.header.Get("x-ms-max-item-count") != "2" || r.path != "/devices/query" {
			t.Fatalf("query request %+v", r)
		}
	}
}
