package rest_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hubtest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/rest"
)

// server is the REST face over a real hub on a bbolt file.
func server(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	h := hubtest.New(t, hub.Options{})
	srv := httptest.NewServer(rest.New(h, rest.Config{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	p, _ := h.Policy("iothubowner")
	tok, _ := sas.New("localhost", p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
	return srv, tok.String()
}

type call struct {
	method, path, body string
	header             map[string]string
	status             int
	code               string // iothub-errorcode, "" on success
	contains           string // in the body
}

func do(t *testing.T, srv *httptest.Server, auth string, c call) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
	req.Header.Set("Authorization", auth)
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Ensure that each route answers as service-api describes, errors included.
func TestRoutes(t *testing.T) {
	srv, auth := server(t)
	v := "?api-version=2021-04-12"
	calls := []call{
		{method: "PUT", path: "/devices/d1" + v, body: `{"deviceId":"d1"}`, status: 200, contains: `"deviceId":"d1"`},
		{method: "PUT", path: "/devices/d1" + v, body: `{"deviceId":"d1"}`, status: 409, code: "DeviceAlreadyExists", contains: `"Message":"ErrorCode:DeviceAlreadyExists;A device with ID 'd1' is already registered."`},
		{method: "PUT", path: "/devices/d2" + v, body: `{"deviceId":"other"}`, status: 400, code: "ArgumentInvalid"},
		{method: "PUT", path: "/devices/d2" + v, body: ``, status: 400, code: "ArgumentNull"},
		{method: "PUT", path: "/devices/d2" + v, body: `{"deviceId":"d2","status":"sleeping"}`, status: 400, code: "ArgumentInvalid"},
		{method: "PUT", path: "/devices/d1/modules/m1" + v, body: `{}`, status: 201, contains: `"moduleId":"m1"`},
		{method: "PUT", path: "/devices/d1/modules/m1" + v, body: `{}`, status: 409, code: "ModuleAlreadyExistsOnDevice"},
		{method: "PUT", path: "/devices/d1/modules/m1" + v, body: `{}`, header: map[string]string{"If-Match": `"*"`}, status: 200, contains: `"etag":"Mg=="`},
		{method: "PUT", path: "/devices/nope/modules/m1" + v, body: `{}`, status: 404, code: "DeviceNotFound"},
		{method: "PUT", path: "/devices/d1/modules/$edgeHub" + v, body: `{}`, status: 400, code: "ArgumentInvalid"},
		{method: "GET", path: "/devices/d1/modules/m2" + v, status: 404, code: "ModuleNotFound"},
		{method: "GET", path: "/devices/d1/modules" + v, status: 200, contains: `[{"moduleId":"m1"`},
		{method: "PATCH", path: "/twins/d1/modules/m1" + v, body: `{"properties":{"desired":{"m":1}}}`, status: 200, contains: `"moduleId":"m1"`},
		{method: "POST", path: "/twins/d1/modules/m1/methods" + v, body: `{"methodName":"m"}`, status: 404, code: "DeviceNotOnline"},
		{method: "DELETE", path: "/devices/d1/modules/m1" + v, status: 204},
		{method: "GET", path: "/twins/d1/modules/m1" + v, status: 404, code: "ModuleNotFound"},
		{method: "PUT", path: "/devices/d1/modules/m3" + v, body: `{}`, status: 201, contains: `"moduleId":"m3"`},
		// An escaped slash never reaches module m3 of d1.
		{method: "GET", path: "/twins/d1%2Fm3" + v, status: 404, code: "DeviceNotFound"},
		{method: "GET", path: "/devices/d1%2fm3" + v, status: 404, code: "DeviceNotFound"},
		{method: "DELETE", path: "/devices/d1%2Fm3" + v, header: map[string]string{"If-Match": `"*"`}, status: 404, code: "DeviceNotFound"},
		{method: "GET", path: "/devices/d1/modules/m3" + v, status: 200, contains: `"moduleId":"m3"`},
		{method: "DELETE", path: "/devices/d1/modules/m3" + v, status: 204},
		{method: "GET", path: "/statistics/devices" + v, status: 200, contains: `"totalDeviceCount":1`},
		{method: "GET", path: "/statistics/service" + v, status: 200, contains: `"connectedDeviceCount":0`},
		{method: "PATCH", path: "/twins/d1" + v, body: `{"tags":{"site":"lab"},"properties":{"desired":{"x":1,"$version":9,"$metadata":{}},"reported":{"ignored":true}}}`, status: 200, contains: `"x":1`},
		{method: "GET", path: "/twins/d1" + v, status: 200, contains: `"tags":{"site":"lab"}`},
		{method: "PATCH", path: "/twins/d1" + v, body: `{"tags":{"a.b":1}}`, status: 400, code: "ArgumentInvalid", contains: "invalid character"},
		{method: "PATCH", path: "/twins/d1" + v, body: `{"tags":{"x":1}}`, header: map[string]string{"If-Match": `"AAAAAAAAAAE="`}, status: 412, code: "PreconditionFailed"},
		{method: "POST", path: "/twins/d1/methods" + v, body: `{"methodName":"m"}`, status: 404, code: "DeviceNotOnline", contains: `\"errorCode\":404103`},
		{method: "POST", path: "/twins/d1/methods" + v, body: `{"methodName":"m","responseTimeoutInSeconds":301}`, status: 400, code: "ArgumentInvalid"},
		{method: "POST", path: "/twins/d1/methods" + v, body: `{nope`, status: 400, code: "IotHubFormatError"},
		{method: "POST", path: "/devices/query" + v, body: `{"query":"SELECT * FROM devices"}`, status: 200, contains: `"deviceId":"d1"`},
		{method: "POST", path: "/devices/query" + v, body: `{"query":""}`, status: 400, code: "ArgumentNull"},
		{method: "POST", path: "/devices/query" + v, body: `{"query":"SELECT * FROM devices"}`, header: map[string]string{"x-ms-max-item-count": "zero"}, status: 400, code: "ArgumentInvalid"},
		{method: "POST", path: "/devices/query" + v, body: `{"query":"SELECT * FROM devices"}`, header: map[string]string{"x-ms-continuation": "bm9wZQ=="}, status: 400, code: "ArgumentInvalid"},
		{method: "PUT", path: "/jobs/v2/j1" + v, body: `{"jobId":"j1","type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"*","tags":{"j":1}}}`, status: 200, contains: `"status":"queued"`},
		{method: "GET", path: "/jobs/v2/nope" + v, status: 404, code: "JobNotFound"},
		{method: "PUT", path: "/jobs/v2/later" + v, body: `{"type":"scheduleUpdateTwin","queryCondition":"*","startTime":"2099-01-01T00:00:00Z","updateTwin":{"tags":{"j":2}}}`, status: 200, contains: `"jobId":"later"`},
		{method: "POST", path: "/jobs/v2/later/cancel" + v, status: 200, contains: `"status":"cancelled"`},
		{method: "POST", path: "/jobs/v2/nope/cancel" + v, status: 404, code: "JobNotFound"},
		{method: "POST", path: "/devices/query" + v, body: `{"query":"SELECT properties.desired AS d FROM devices WHERE IS_OBJECT(properties.desired)"}`, status: 200, contains: `"$version":`},
		{method: "GET", path: "/jobs/v2/query" + v + "&jobType=SCHEDULEUPDATETWIN", status: 200, contains: `"jobId":"j1"`},
		{method: "DELETE", path: "/devices/d1" + v, header: map[string]string{"If-Match": `"bm9wZQ=="`}, status: 412, code: "PreconditionFailed"},
		{method: "DELETE", path: "/devices/d1" + v, header: map[string]string{"If-Match": `"*"`}, status: 204},
		{method: "GET", path: "/devices/d1", status: 400, code: "InvalidProtocolVersion"},
		{method: "GET", path: "/nothing" + v, status: 404, code: "NotFound"},
		{method: "POST", path: "/devices/d1" + v, status: 405, code: "MethodNotAllowed"},
	}
	for _, c := range calls {
		resp, body := do(t, srv, auth, c)
		if resp.StatusCode != c.status || resp.Header.Get("iothub-errorcode") != c.code || !strings.Contains(body, c.contains) {
			t.Errorf("%s %s: %d %q %s\nwant %d %q containing %s", c.method, c.path, resp.StatusCode, resp.Header.Get("iothub-errorcode"), body, c.status, c.code, c.contains)
		}
		if body != "" && resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, resp.Header.Get("Content-Type"))
		}
	}
}

// Ensure that pages hold x-ms-max-item-count rows, carry a continuation
// token on every page but the last, and name their item type.
func TestPaging(t *testing.T) {
	srv, auth := server(t)
	v := "?api-version=2021-04-12"
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		do(t, srv, auth, call{method: "PUT", path: "/devices/" + id + v, body: `{}`})
	}
	q := call{method: "POST", path: "/devices/query" + v, body: `{"query":"SELECT deviceId FROM devices"}`, header: map[string]string{"x-ms-max-item-count": "2"}}
	var all []string
	for page := 0; ; page++ {
		resp, body := do(t, srv, auth, q)
		var rows []map[string]string
		if err := json.Unmarshal([]byte(body), &rows); err != nil || resp.Header.Get("x-ms-item-type") != string(iothub.ItemRaw) {
			t.Fatalf("page %d: %s %v %q", page, body, err, resp.Header.Get("x-ms-item-type"))
		}
		for _, r := range rows {
			all = append(all, r["deviceId"])
		}
		tok := resp.Header.Get("x-ms-continuation")
		if _, present := resp.Header["X-Ms-Continuation"]; !present {
			break
		}
		if tok == "" || page > 5 {
			t.Fatal("an empty or endless continuation")
		}
		q.header["x-ms-continuation"] = tok
	}
	if strings.Join(all, ",") != "a,b,c,d,e" {
		t.Fatalf("rows %v", all)
	}
}
