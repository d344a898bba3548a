package emulatortest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Ensure that the admin listener serves the dashboard: its page and
// scripts, a session whose token the service API under /api/ accepts as
// the iothubowner policy's, the hub's activity feed through it; that the
// session is refused to a request addressed to another name (a rebound
// DNS name), and the API to a request without the token; and that
// -dashboard=false serves none of it.
func TestDashboardServing(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "dash-1")
	base := e.DashboardURL()
	get := func(path, host, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+strings.TrimPrefix(path, "/"), nil)
		if host != "" {
			req.Host = host
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/", "", ""); code != 200 || !strings.Contains(body, `src="app.js"`) {
		t.Fatalf("GET /: %d %.200s", code, body)
	}
	if code, body := get("/app.js", "", ""); code != 200 || !strings.Contains(body, "/api") {
		t.Fatalf("GET /app.js: %d", code)
	}
	code, body := get("/session", "", "")
	var s struct{ HostName, Authorization string }
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil || s.HostName != "localhost" || !strings.HasPrefix(s.Authorization, "SharedAccessSignature ") ||
		!strings.Contains(s.Authorization, "skn=iothubowner") {
		t.Fatalf("GET /session: %d %s", code, body)
	}
	if code, _ := get("/session", "attacker.example:8080", ""); code != http.StatusForbidden {
		t.Fatalf("a session for another host name: %d, want 403", code)
	}
	code, body = get("/api/devices/dash-1?api-version="+iothub.APIVersion, "", s.Authorization)
	if code != 200 || !strings.Contains(body, `"deviceId":"dash-1"`) {
		t.Fatalf("the service API through the dashboard: %d %.200s", code, body)
	}
	if code, _ := get("/api/devices/dash-1?api-version="+iothub.APIVersion, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("the service API without a token: %d, want 401", code)
	}
	e.Dial(t, cs, iotdevice.Options{}).Close()
	eventually(t, "the feed shows the refused request, dash-1 connecting and disconnecting", func() error {
		code, body := get("/api/emulator/activity?after=0&api-version="+iothub.APIVersion, "", s.Authorization)
		var feed []struct{ Kind, DeviceID string }
		if code != 200 || json.Unmarshal([]byte(body), &feed) != nil {
			return fmt.Errorf("the activity feed: %d %s", code, body)
		}
		var kinds []string
		for _, a := range feed {
			if a.DeviceID == "dash-1" {
				kinds = append(kinds, a.Kind)
			}
		}
		if strings.Join(kinds, ",") != "error,connected,disconnected" { // the 401 above, then the device
			return fmt.Errorf("activity of dash-1: %v", kinds)
		}
		return nil
	})

	off := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.NoDashboard = true }))
	if off.DashboardURL() != "" {
		t.Fatal("a dashboard URL with the dashboard off")
	}
	res, err := http.Get("http://" + off.AdminAddr() + "/session")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("/session with the dashboard off: %d", res.StatusCode)
	}
}
