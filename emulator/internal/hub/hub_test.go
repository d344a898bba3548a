package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

var ctx = context.Background()

// testHub is a hub on a bbolt file in a temporary directory.
type testHub struct {
	*hub.Hub
	path  string
	store *bolt.Store
	opts  hub.Options
}

func mustOpen(tb testing.TB, opts hub.Options) *testHub {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	th := &testHub{path: filepath.Join(tb.TempDir(), "hub.db"), opts: opts}
	th.reopen(tb)
	return th
}

// reopen closes the store and opens a new hub on the same file, as a
// restart does.
func (th *testHub) reopen(tb testing.TB) {
	tb.Helper()
	if th.store != nil {
		th.Hub.Close()
		th.store.Close()
	}
	st, err := bolt.Open(th.path, bolt.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	opts := th.opts
	if opts.Events == nil {
		opts.Events = st // the telemetry log, as the emulator keeps it
	}
	h, err := hub.New(st, st, opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	th.Hub, th.store = h, st
}

func mustDevice(tb testing.TB, h *testHub, id string) iothub.Device {
	tb.Helper()
	d, err := h.PutDevice(ctx, iothub.Device{DeviceID: id}, "")
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func wantCode(tb testing.TB, err error, code iothub.ErrorCode) {
	tb.Helper()
	if got := iothub.CodeOf(err); got != code {
		tb.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

func obj(tb testing.TB, s string) map[string]any {
	tb.Helper()
	m, err := iothub.DecodeObject([]byte(s))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// fakeLink is a device connection that records what the hub sends it.
type fakeLink struct {
	mu      sync.Mutex
	n       int
	methods chan [3]string // name, rid, payload
	desired chan string
	closed  chan string
}

func newLink() *fakeLink {
	return &fakeLink{methods: make(chan [3]string, 16), desired: make(chan string, 16), closed: make(chan string, 4)}
}

func (l *fakeLink) NextRequestID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	return strconv.FormatInt(int64(l.n), 16)
}
func (l *fakeLink) SendMethod(name, rid string, p []byte) error {
	l.methods <- [3]string{name, rid, string(p)}
	return nil
}
func (l *fakeLink) SendDesired(v int64, b []byte) error { l.desired <- string(b); return nil }
func (l *fakeLink) SendC2D(m hub.C2DMessage) error      { return nil }
func (l *fakeLink) Close(e *iothub.Error)               { l.closed <- e.Message }

func TestRegistry(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	d := mustDevice(t, h, "sensor-01")
	if d.ETag != "MQ==" || d.Status != iothub.StatusEnabled || d.ConnectionState != iothub.Disconnected || len(d.GenerationID) != 18 {
		t.Fatalf("created device %+v", d)
	}
	if d.Authentication.Type != iothub.AuthSAS || len(d.Authentication.SymmetricKey.PrimaryKey) != 44 || d.Authentication.SymmetricKey.PrimaryKey == d.Authentication.SymmetricKey.SecondaryKey {
		t.Fatalf("keys were not generated: %+v", d.Authentication)
	}
	t.Run("ErrDeviceAlreadyExists", func(t *testing.T) {
		_, err := h.PutDevice(ctx, iothub.Device{DeviceID: "sensor-01"}, "")
		wantCode(t, err, iothub.DeviceAlreadyExists)
	})
	t.Run("ErrInvalidID", func(t *testing.T) {
		_, err := h.PutDevice(ctx, iothub.Device{DeviceID: "a/b"}, "")
		wantCode(t, err, iothub.ArgumentInvalid)
	})
	t.Run("ErrBadKey", func(t *testing.T) {
		_, err := h.PutDevice(ctx, iothub.Device{DeviceID: "k", Authentication: iothub.Authentication{SymmetricKey: iothub.SymmetricKey{PrimaryKey: "c2hvcnQ="}}}, "")
		wantCode(t, err, iothub.ArgumentInvalid)
	})
	t.Run("ErrPreconditionFailed", func(t *testing.T) {
		_, err := h.PutDevice(ctx, iothub.Device{DeviceID: "sensor-01"}, `"bm9wZQ=="`)
		wantCode(t, err, iothub.PreconditionFailed)
	})
	t.Run("ReplaceWithETag", func(t *testing.T) {
		d2, err := h.PutDevice(ctx, iothub.Device{DeviceID: "sensor-01", Status: iothub.StatusDisabled}, `"`+d.ETag+`"`)
		if err != nil || d2.Status != iothub.StatusDisabled || d2.ETag == d.ETag || d2.GenerationID != d.GenerationID {
			t.Fatalf("replace: %+v, %v", d2, err)
		}
		if d2.Authentication.SymmetricKey == d.Authentication.SymmetricKey {
			t.Fatal("a PUT without keys kept the old keys")
		}
	})
	t.Run("ErrReplaceMissing", func(t *testing.T) {
		_, err := h.PutDevice(ctx, iothub.Device{DeviceID: "ghost"}, "*")
		wantCode(t, err, iothub.DeviceNotFound)
	})
	mustDevice(t, h, "a-first")
	if got := h.Devices(0); len(got) != 2 || got[0].DeviceID != "a-first" {
		t.Fatalf("Devices = %v", got)
	}
	if s := h.RegistryStatistics(); s.TotalDeviceCount != 2 || s.DisabledDeviceCount != 1 {
		t.Fatalf("statistics %+v", s)
	}
	if err := h.DeleteDevice(ctx, "a-first", `"*"`); err != nil {
		t.Fatal(err)
	}
	_, err := h.Device("a-first")
	wantCode(t, err, iothub.DeviceNotFound)
	wantCode(t, h.DeleteDevice(ctx, "a-first", ""), iothub.DeviceNotFound)
}

// Ensure that a new twin, and its versions after writes, look as the real
// hub's do (service-api §4.1, §4.2; device-protocol §11).
func TestTwinVersions(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "d1")
	tw, _ := h.Twin("d1")
	if tw.ETag != "AAAAAAAAAAE=" || tw.Version != 2 || tw.Properties.Desired.Version != 1 || tw.Properties.Reported.Version != 1 {
		t.Fatalf("fresh twin %s", jsonOf(tw))
	}
	v, err := h.UpdateReported(ctx, "d1", obj(t, `{"rebootTime":"2024-01-01T00:00:00Z","fw":{"version":"1.0"}}`))
	if err != nil || v != 2 {
		t.Fatalf("UpdateReported = %d, %v", v, err)
	}
	v, _ = h.UpdateReported(ctx, "d1", obj(t, `{"fw":{"version":null,"state":"ok"},"gone":null,"p":{"q":null}}`))
	if v != 3 {
		t.Fatalf("version %d, want 3", v)
	}
	dt, _ := h.DeviceTwin("d1")
	if got := jsonOf(dt); got != `{"desired":{"$version":1},"reported":{"fw":{"state":"ok"},"p":{},"rebootTime":"2024-01-01T00:00:00Z","$version":3}}` {
		t.Fatalf("device twin %s", got)
	}
	tw, _ = h.Twin("d1")
	if tw.Properties.Reported.Metadata.Children["fw"].Children["state"] == nil || tw.Properties.Reported.Metadata.Children["fw"].Children["version"] != nil {
		t.Fatalf("reported metadata %s", jsonOf(tw.Properties.Reported.Metadata))
	}
	if tw.Version != 4 || tw.ETag != "AAAAAAAAAAE=" {
		t.Fatalf("after reported patches: version %d etag %s", tw.Version, tw.ETag)
	}
	t.Run("ErrInvalidPatchChangesNothing", func(t *testing.T) {
		_, err := h.UpdateReported(ctx, "d1", obj(t, `{"ok":1,"bad":[null]}`))
		wantCode(t, err, iothub.ArgumentInvalid)
		dt2, _ := h.DeviceTwin("d1")
		if jsonOf(dt2) != jsonOf(dt) {
			t.Fatalf("a rejected patch changed the twin: %s", jsonOf(dt2))
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		big := map[string]any{}
		for i := 0; i < 9; i++ {
			big["k"+strconv.Itoa(i)] = strings.Repeat("x", 4000)
		}
		_, err := h.UpdateReported(ctx, "d1", big)
		wantCode(t, err, iothub.ArgumentInvalid)
	})
}

func TestUpdateTwin(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "d1")
	tw, err := h.UpdateTwin(ctx, "d1", hub.TwinPatch{Tags: obj(t, `{"location":{"region":"EU"}}`), Desired: obj(t, `{"interval":30,"old":1}`)}, `"AAAAAAAAAAE="`, false)
	if err != nil {
		t.Fatal(err)
	}
	des := tw.Properties.Desired
	if des.Version != 2 || des.Metadata.Children["interval"].LastUpdatedVersion != 2 || tw.ETag != "AAAAAAAAAAI=" {
		t.Fatalf("after patch %s", jsonOf(tw))
	}
	_, err = h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, `{"x":1}`)}, `"AAAAAAAAAAE="`, false)
	wantCode(t, err, iothub.PreconditionFailed)
	tw, err = h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, `{"old":null}`)}, `"*"`, false)
	if err != nil || jsonOf(tw.Properties.Desired.Props) != `{"interval":30}` || jsonOf(tw.Tags) != `{"location":{"region":"EU"}}` {
		t.Fatalf("after delete: %s, %v", jsonOf(tw), err)
	}
	tw, err = h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, `{"fresh":true}`)}, "", true)
	if err != nil || jsonOf(tw.Properties.Desired.Props) != `{"fresh":true}` || len(tw.Tags) != 0 || tw.Properties.Desired.Version != 4 {
		t.Fatalf("after replace: %s, %v", jsonOf(tw), err)
	}
	_, err = h.UpdateTwin(ctx, "d1", hub.TwinPatch{Tags: obj(t, `{"$x":1}`)}, "", false)
	wantCode(t, err, iothub.ArgumentInvalid)
	_, err = h.UpdateTwin(ctx, "nope", hub.TwinPatch{}, "", false)
	wantCode(t, err, iothub.DeviceNotFound)
}

// Ensure that everything the hub acknowledged is there after a restart.
func TestRestartKeepsState(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	d := mustDevice(t, h, "d1")
	h.UpdateReported(ctx, "d1", obj(t, `{"n":4503599627370495}`))
	h.UpdateTwin(ctx, "d1", hub.TwinPatch{Tags: obj(t, `{"t":1}`), Desired: obj(t, `{"x":"y"}`)}, "", false)
	c, _, _ := h.Attach(ctx, "d1", newLink(), true)
	h.Subscribe(c, hub.SubMethods|hub.SubTwinResponses)
	before, _ := h.Twin("d1")

	h.reopen(t)
	d2, err := h.Device("d1")
	if err != nil || d2.Authentication != d.Authentication || d2.ConnectionState != iothub.Disconnected {
		t.Fatalf("device after restart %+v, %v", d2, err)
	}
	after, _ := h.Twin("d1")
	before.ConnectionState, before.LastActivityTime = after.ConnectionState, after.LastActivityTime
	if jsonOf(after) != jsonOf(before) {
		t.Fatalf("twin changed across a restart:\n%s\n%s", jsonOf(before), jsonOf(after))
	}
	c2, present, err := h.Attach(ctx, "d1", newLink(), true)
	if err != nil || !present || !c2.Subscribed(hub.SubMethods|hub.SubTwinResponses) || c2.Subscribed(hub.SubDesired) {
		t.Fatalf("session after restart: present=%v, %v", present, err)
	}
	c3, present, _ := h.Attach(ctx, "d1", newLink(), false)
	if present || c3.Subscribed(hub.SubMethods) {
		t.Fatal("a clean session kept the old subscriptions")
	}
}

func TestInvokeMethod(t *testing.T) {
	// A margin of 4.9 s makes the minimum 5 s response timeout fire after 100 ms.
	h := mustOpen(t, hub.Options{MethodTimeoutMargin: 4900 * time.Millisecond})
	mustDevice(t, h, "d1")
	mustDevice(t, h, "d2")
	five := 5
	req := iothub.MethodRequest{MethodName: "rebootDevice", Payload: json.RawMessage(`{"delay":1}`), ResponseTimeoutInSeconds: &five}

	_, err := h.InvokeMethod(ctx, "d1", req)
	wantCode(t, err, iothub.DeviceNotOnline)
	_, err = h.InvokeMethod(ctx, "ghost", req)
	wantCode(t, err, iothub.DeviceNotFound)

	l1, l2 := newLink(), newLink()
	c1, _, _ := h.Attach(ctx, "d1", l1, true)
	c2, _, _ := h.Attach(ctx, "d2", l2, true)
	_, err = h.InvokeMethod(ctx, "d1", req)
	wantCode(t, err, iothub.DeviceNotOnline) // connected, not subscribed
	h.Subscribe(c1, hub.SubMethods)
	h.Subscribe(c2, hub.SubMethods)

	t.Run("OK", func(t *testing.T) {
		go func() {
			m := <-l1.methods
			c2.CompleteMethod(m[1], 500, []byte(`{"wrong":"connection"}`)) // another device's answer is ignored
			c1.CompleteMethod(m[1], 200, []byte(`{"method":"`+m[0]+`","got":`+m[2]+`}`))
		}()
		res, err := h.InvokeMethod(ctx, "d1", req)
		if err != nil || res.Status != 200 || string(res.Payload) != `{"method":"rebootDevice","got":{"delay":1}}` {
			t.Fatalf("got %+v, %v", res, err)
		}
		select {
		case m := <-l2.methods:
			t.Fatalf("d2 received d1's method %v", m)
		default:
		}
	})
	t.Run("DeviceStatusIsAResult", func(t *testing.T) {
		go func() { m := <-l1.methods; c1.CompleteMethod(m[1], 404, nil) }()
		res, err := h.InvokeMethod(ctx, "d1", iothub.MethodRequest{MethodName: "unknown"})
		if err != nil || res.Status != 404 || string(res.Payload) != "null" {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
	t.Run("NonJSONBodyBecomesString", func(t *testing.T) {
		go func() { m := <-l1.methods; c1.CompleteMethod(m[1], 200, []byte(`done`)) }()
		res, _ := h.InvokeMethod(ctx, "d1", req)
		if string(res.Payload) != `"done"` {
			t.Fatalf("payload %s", res.Payload)
		}
	})
	t.Run("ErrGatewayTimeout", func(t *testing.T) {
		start := time.Now()
		_, err := h.InvokeMethod(ctx, "d1", req)
		wantCode(t, err, iothub.GatewayTimeout)
		<-l1.methods
		if time.Since(start) > 4*time.Second {
			t.Fatal("the timeout did not use the response timeout")
		}
	})
	t.Run("ErrArgumentInvalid", func(t *testing.T) {
		bad := 2
		_, err := h.InvokeMethod(ctx, "d1", iothub.MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: &bad})
		wantCode(t, err, iothub.ArgumentInvalid)
	})
	t.Run("WaitsForConnect", func(t *testing.T) {
		h.Detach(c2)
		conn := 5
		l := newLink()
		go func() {
			time.Sleep(50 * time.Millisecond)
			c, _, _ := h.Attach(ctx, "d2", l, true)
			m := <-l.methods
			c.CompleteMethod(m[1], 200, nil)
		}()
		res, err := h.InvokeMethod(ctx, "d2", iothub.MethodRequest{MethodName: "m", ConnectTimeoutInSeconds: &conn})
		if err != nil || res.Status != 200 {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
}

func TestDesiredNotification(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "d1")
	l := newLink()
	c, _, _ := h.Attach(ctx, "d1", l, false)
	h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, `{"a":1}`)}, "", false)
	select {
	case got := <-l.desired:
		t.Fatalf("notified without a subscription: %s", got)
	default:
	}
	h.Subscribe(c, hub.SubDesired)
	h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, `{"telemetryInterval":10,"a":null}`)}, "", false)
	if got := <-l.desired; got != `{"a":null,"telemetryInterval":10,"$version":3}` {
		t.Fatalf("notification %s", got)
	}
	h.UpdateTwin(ctx, "d1", hub.TwinPatch{Tags: obj(t, `{"t":1}`)}, "", false)
	select {
	case got := <-l.desired:
		t.Fatalf("a tags change notified the device: %s", got)
	default:
	}
}

func TestAuthenticateDevice(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := mustOpen(t, hub.Options{HostNames: []string{"myhub.localhost"}, Now: func() time.Time { return now }})
	d := mustDevice(t, h, "d1")
	mustDevice(t, h, "d2")
	key := d.Authentication.SymmetricKey
	devicePolicy, _ := h.Policy("device")
	svcPolicy, _ := h.Policy("service")
	tok := func(res, skn, k string, exp time.Time) string {
		s, err := sas.New(res, skn, k, exp)
		if err != nil {
			t.Fatal(err)
		}
		return s.String()
	}
	later := now.Add(time.Hour)
	tests := []struct {
		name, host, device, token string
		ok                        bool
	}{
		{"Primary", "myhub.localhost", "d1", tok("myhub.localhost/devices/d1", "", key.PrimaryKey, later), true},
		{"Secondary", "MYHUB.localhost", "d1", tok("myhub.localhost/devices/d1", "", key.SecondaryKey, later), true},
		{"HostWithPort", "myhub.localhost:8883", "d1", tok("myhub.localhost:8883/devices/d1", "", key.PrimaryKey, later), true},
		{"UnencodedSR", "myhub.localhost", "d1", "SharedAccessSignature sr=myhub.localhost/devices/d1&sig=" + sas.Escape(sas.Sign("myhub.localhost/devices/d1", "1700003600", mustKey(key.PrimaryKey))) + "&se=1700003600", true},
		{"DevicePolicy", "myhub.localhost", "d1", tok("myhub.localhost/devices", "device", devicePolicy.PrimaryKey, later), true},
		{"WithinSkew", "myhub.localhost", "d1", tok("myhub.localhost/devices/d1", "", key.PrimaryKey, now.Add(-time.Minute)), true},
		{"ErrExpired", "myhub.localhost", "d1", tok("myhub.localhost/devices/d1", "", key.PrimaryKey, now.Add(-10*time.Minute)), false},
		{"ErrOtherDevicesToken", "myhub.localhost", "d2", tok("myhub.localhost/devices/d1", "", key.PrimaryKey, later), false},
		{"ErrWrongKey", "myhub.localhost", "d1", tok("myhub.localhost/devices/d1", "", svcPolicy.PrimaryKey, later), false},
		{"ErrPolicyWithoutDeviceConnect", "myhub.localhost", "d1", tok("myhub.localhost", "service", svcPolicy.PrimaryKey, later), false},
		{"ErrWrongHost", "otherhub", "d1", tok("otherhub/devices/d1", "", key.PrimaryKey, later), false},
		{"ErrUnknownDevice", "myhub.localhost", "ghost", tok("myhub.localhost/devices/ghost", "", key.PrimaryKey, later), false},
		{"ErrGarbage", "myhub.localhost", "d1", "hello", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.AuthenticateDevice(tt.host, tt.device, "", tt.token)
			if (err == nil) != tt.ok {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				wantCode(t, err, iothub.IotHubUnauthorized)
			}
		})
	}
	t.Run("ErrDisabled", func(t *testing.T) {
		h.PutDevice(ctx, iothub.Device{DeviceID: "d1", Status: iothub.StatusDisabled, Authentication: d.Authentication}, "*")
		_, err := h.AuthenticateDevice("myhub.localhost", "d1", "", tok("myhub.localhost/devices/d1", "", key.PrimaryKey, later))
		wantCode(t, err, iothub.IotHubUnauthorized)
	})
}

func mustKey(k string) []byte {
	b, err := sas.DecodeKey(k)
	if err != nil {
		panic(err)
	}
	return b
}

func TestAuthorizeService(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	owner, _ := h.Policy("iothubowner")
	read, _ := h.Policy("registryRead")
	tok := func(p hub.Policy, res string) string {
		s, _ := sas.New(res, p.Name, p.SecondaryKey, time.Now().Add(time.Hour))
		return s.String()
	}
	if err := h.AuthorizeService(tok(owner, "localhost"), hub.RegistryWrite|hub.ServiceConnect); err != nil {
		t.Fatal(err)
	}
	if err := h.AuthorizeService(tok(read, "localhost"), hub.RegistryRead); err != nil {
		t.Fatal(err)
	}
	for name, header := range map[string]string{
		"NoHeader":       "",
		"NoRight":        tok(read, "localhost"),
		"OtherHub":       tok(owner, "other"),
		"UnknownPolicy":  tok(hub.Policy{Name: "nobody", SecondaryKey: owner.PrimaryKey}, "localhost"),
		"NotAToken":      "Bearer x",
		"DeviceKeyNoSKN": tok(hub.Policy{SecondaryKey: owner.PrimaryKey}, "localhost/devices/d1"),
	} {
		wantCode(t, h.AuthorizeService(header, hub.RegistryWrite), iothub.IotHubUnauthorizedAccess)
		_ = name
	}
}

func TestTelemetry(t *testing.T) {
	h := mustOpen(t, hub.Options{Partitions: 1})
	mustDevice(t, h, "d1")
	mustDevice(t, h, "d2")
	c, _, _ := h.Attach(ctx, "d1", newLink(), false)
	c2, _, _ := h.Attach(ctx, "d2", newLink(), false)
	// More than one chunk of the backwards read, the two devices
	// interleaved in the one partition.
	for i := 0; i < 1500; i++ {
		if err := c.Telemetry("", map[string]string{"i": strconv.Itoa(i)}, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			c2.Telemetry("", nil, []byte("y"))
		}
	}
	msgs, err := h.Messages("d1", 1200)
	if err != nil || len(msgs) != 1200 || msgs[0].Properties["i"] != "300" || msgs[1199].Properties["i"] != "1499" {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if m.DeviceID != "d1" {
			t.Fatalf("a message of %s", m.DeviceID)
		}
	}
	d, _ := h.Device("d1")
	if d.LastActivityTime.IsZero() || d.ConnectionState != iothub.Connected {
		t.Fatalf("device %+v", d)
	}
}

// Ensure that a patch whose desired section is null removes every
// desired property under a new $version, with or without If-Match, and
// that the device is told only that version: on Azure, PATCH /twins/{id}
// with {"properties":{"desired":null}} empties the section, and the
// device's notification carries $version alone.
func TestDesiredNull(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "d1")
	l := newLink()
	c, _, _ := h.Attach(ctx, "d1", l, false)
	h.Subscribe(c, hub.SubDesired)
	var body iothub.TwinPatch
	if err := json.Unmarshal([]byte(`{"properties":{"desired":null}}`), &body); err != nil || !body.ClearsDesired() {
		t.Fatalf("desired null decoded as %+v, %v", body, err)
	}
	for i, ifMatch := range []string{"", "*"} {
		h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, `{"a":1,"b":{"c":2}}`)}, "", false)
		<-l.desired
		tw, err := h.UpdateTwin(ctx, "d1", hub.PatchOf(body), ifMatch, false)
		if err != nil || len(tw.Properties.Desired.Props) != 0 || tw.Properties.Desired.Version != int64(2*i+3) {
			t.Fatalf("If-Match %q: desired %+v, %v", ifMatch, tw.Properties.Desired, err)
		}
		if got := <-l.desired; got != fmt.Sprintf(`{"$version":%d}`, 2*i+3) {
			t.Fatalf("notification %s", got)
		}
	}
	// And it survives a restart as an empty section.
	h.reopen(t)
	if tw, _ := h.Twin("d1"); len(tw.Properties.Desired.Props) != 0 || tw.Properties.Desired.Version != 5 {
		t.Fatalf("after a restart: %+v", tw.Properties.Desired)
	}
}

// Ensure that desired properties changed while the device is offline
// reach it whole: on Azure a device that reconnects reads its twin and
// gets the desired section the service sees, every merge applied in
// order (members set to null removed, objects merged, arrays replaced),
// under the service's $version.
func TestDesiredWhileOffline(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "d1")
	c, _, _ := h.Attach(ctx, "d1", newLink(), true)
	h.Subscribe(c, hub.SubDesired)
	h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, `{"a":1,"nested":{"x":1,"gone":{"z":1}},"list":[1,2]}`)}, "*", false)
	h.Detach(c)
	for _, p := range []string{`{"a":null,"b":2,"nested":{"y":2,"gone":{"z":null}},"list":[3]}`, `{"c":{"d":"e"},"nested":{"x":null}}`} {
		if _, err := h.UpdateTwin(ctx, "d1", hub.TwinPatch{Desired: obj(t, p)}, "*", false); err != nil {
			t.Fatal(err)
		}
	}
	c, _, _ = h.Attach(ctx, "d1", newLink(), true)
	defer h.Detach(c)
	dev, _ := h.DeviceTwin("d1")
	svc, _ := h.Twin("d1")
	want := `{"b":2,"c":{"d":"e"},"list":[3],"nested":{"gone":{},"y":2}}`
	if got := jsonOf(dev.Desired.Props); got != want || jsonOf(svc.Properties.Desired.Props) != want || dev.Desired.Version != svc.Properties.Desired.Version || dev.Desired.Version != 4 {
		t.Fatalf("the device reads %s (v%d), the service %s (v%d)", got, dev.Desired.Version, jsonOf(svc.Properties.Desired.Props), svc.Properties.Desired.Version)
	}
}

// Ensure that unsubscribing from methods makes the device unreachable for
// them, and that a persistent session remembers that.
func TestUnsubscribe(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "d1")
	c, _, _ := h.Attach(ctx, "d1", newLink(), true)
	h.Subscribe(c, hub.SubMethods|hub.SubDesired)
	if err := h.Unsubscribe(c, hub.SubMethods); err != nil {
		t.Fatal(err)
	}
	_, err := h.InvokeMethod(ctx, "d1", iothub.MethodRequest{MethodName: "m"})
	wantCode(t, err, iothub.DeviceNotOnline)
	h.Detach(c)
	c2, _, _ := h.Attach(ctx, "d1", newLink(), true)
	if c2.Subscribed(hub.SubMethods) || !c2.Subscribed(hub.SubDesired) {
		t.Fatal("the session did not keep the unsubscription")
	}
}
