package emulatortest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// httpDevice sends a device's HTTPS requests as the SDKs do.
type httpDevice struct {
	t    *testing.T
	e    *emulatortest.Env
	cs   connstr.Device
	http *http.Client
}

func (d httpDevice) do(method, path, token string, header map[string]string, body []byte) *http.Response {
	d.t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, "https://"+d.e.HTTPSAddr()+path+sep+"api-version="+iothub.APIVersion, bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Host = "localhost"
	if token == "" {
		tok, err := sas.New(sas.DeviceResource("localhost", d.cs.DeviceID, ""), "", d.cs.SharedAccessKey, time.Now().Add(time.Hour))
		if err != nil {
			d.t.Fatal(err)
		}
		token = tok.String()
	}
	req.Header.Set("Authorization", token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := d.http.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { res.Body.Close() })
	return res
}

func wantStatus(t *testing.T, what string, res *http.Response, status int, code string) {
	t.Helper()
	if res.StatusCode != status || res.Header.Get("iothub-errorcode") != code {
		b, _ := io.ReadAll(res.Body)
		t.Errorf("%s: %d %s %s; want %d %s", what, res.StatusCode, res.Header.Get("iothub-errorcode"), b, status, code)
	}
}

// Ensure the edges of the device HTTPS API that the official SDKs do not
// reach: a token of another device, a body over 256 KB, an If-Match that
// names another lock, C#'s deviceBound spelling with a quoted If-Match
// and its lock timeout, and modules, which cannot use HTTPS.
func TestDeviceHTTPS(t *testing.T) {
	e := emulatortest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := httpDevice{t: t, e: e, cs: e.AddDevice(t, "web"), http: e.HTTPClient()}
	other := httpDevice{t: t, e: e, cs: e.AddDevice(t, "other"), http: e.HTTPClient()}
	events := "/devices/web/messages/events"

	res := d.do("POST", events, "", map[string]string{"iothub-messageid": "m1", "iothub-app-k": "v"}, []byte("hello"))
	wantStatus(t, "an event", res, 204, "")
	if msgs, err := e.Service(t).Messages(ctx, "web"); err != nil || len(msgs) != 1 || string(msgs[0].Body) != "hello" ||
		msgs[0].Properties["$.mid"] != "m1" || msgs[0].Properties["k"] != "v" {
		t.Errorf("stored %+v, %v", msgs, err)
	}
	otherTok, _ := sas.New(sas.DeviceResource("localhost", "other", ""), "", other.cs.SharedAccessKey, time.Now().Add(time.Hour))
	wantStatus(t, "another device's token", d.do("POST", events, otherTok.String(), nil, []byte("x")), 401, "IotHubUnauthorizedAccess")
	wantStatus(t, "no token", d.do("POST", events, "SharedAccessSignature sr=x", nil, []byte("x")), 401, "IotHubUnauthorizedAccess")
	wantStatus(t, "a body over 256 KB", d.do("POST", events, "", nil, bytes.Repeat([]byte("x"), 256*1024+1)), 413, "MessageTooLarge")
	wantStatus(t, "a bad batch", d.do("POST", events, "", map[string]string{"Content-Type": "application/vnd.microsoft.iothub.json"}, []byte(`{}`)), 400, "ArgumentInvalid")
	wantStatus(t, "a module", d.do("POST", "/devices/web/modules/m/messages/events", "", nil, []byte("x")), 404, "NotFound")

	// Cloud-to-device, the C# way.
	svc := e.Service(t)
	if err := svc.SendC2D(ctx, "web", iothub.CloudToDeviceMessage{Body: "c2d", MessageID: "c1", Properties: map[string]string{"p": "1"}}); err != nil {
		t.Fatal(err)
	}
	bound := "/devices/web/messages/deviceBound"
	wantStatus(t, "a lock timeout out of range", d.do("GET", bound+"?iothub-messagelocktimeout=1", "", nil, nil), 400, "ArgumentInvalid")
	res = d.do("GET", bound, "", nil, nil)
	body, _ := io.ReadAll(res.Body)
	etag := res.Header.Get("ETag")
	if res.StatusCode != 200 || string(body) != "c2d" || !strings.HasPrefix(etag, `"`) || res.Header.Get("iothub-messageid") != "c1" ||
		res.Header.Get("iothub-app-p") != "1" || res.Header.Get("iothub-deliverycount") != "1" || res.Header.Get("iothub-to") != "/devices/web/messages/devicebound" {
		t.Fatalf("receive: %d %q %v", res.StatusCode, body, res.Header)
	}
	lock := strings.Trim(etag, `"`)
	wantStatus(t, "nothing more to receive", d.do("GET", bound, "", nil, nil), 204, "")
	wantStatus(t, "If-Match naming another lock", d.do("DELETE", bound+"/"+lock, "", map[string]string{"If-Match": `"another"`}, nil), 412, "DeviceMessageLockLost")
	wantStatus(t, "another device completing it", other.do("DELETE", "/devices/other/messages/devicebound/"+lock, "", nil, nil), 412, "DeviceMessageLockLost")
	wantStatus(t, "complete", d.do("DELETE", bound+"/"+lock, "", map[string]string{"If-Match": `"` + lock + `"`}, nil), 204, "")
	wantStatus(t, "complete again", d.do("DELETE", bound+"/"+lock, "", nil, nil), 412, "DeviceMessageLockLost")
}
