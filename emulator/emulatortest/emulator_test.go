package emulatortest_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code iothub.ErrorCode) {
	t.Helper()
	if got := iothub.CodeOf(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

// Ensure that the tutorial's flow works end to end: a method reaches the
// device, its answer reaches the caller, and the reported rebootTime is in
// the twin the service reads.
func TestRebootFlow(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	dev := e.Dial(t, e.AddDevice(t, "sim-1"), iotdevice.Options{})
	ctx := testCtx(t)
	rebooted := make(chan string, 1)
	dev.OnMethod("rebootDevice", func(ctx context.Context, p json.RawMessage) (int, any) {
		rebooted <- string(p)
		return 200, map[string]string{"result": "Reboot started"}
	})
	res, err := svc.InvokeMethod(ctx, "sim-1", iothub.MethodRequest{MethodName: "rebootDevice", Payload: json.RawMessage(`{"delay":1}`)})
	if err != nil || res.Status != 200 || string(res.Payload) != `{"result":"Reboot started"}` {
		t.Fatalf("invoke: %+v, %v", res, err)
	}
	if got := <-rebooted; got != `{"delay":1}` {
		t.Fatalf("device got payload %s", got)
	}
	at := time.Now().UTC().Format(time.RFC3339)
	v, err := dev.UpdateReported(ctx, map[string]any{"rebootTime": at})
	if err != nil || v != 2 {
		t.Fatalf("reported: %d, %v", v, err)
	}
	tw, err := svc.Twin(ctx, "sim-1")
	if err != nil || tw.Properties.Reported.Props["rebootTime"] != at || tw.ConnectionState != iothub.Connected {
		t.Fatalf("twin: %+v, %v", tw, err)
	}
	d, _ := svc.Device(ctx, "sim-1")
	if d.LastActivityTime.IsZero() || d.ConnectionState != iothub.Connected {
		t.Fatalf("device %+v", d)
	}
}

// Ensure that a method to one device never reaches another.
func TestMethodIsolation(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	var calls [2]atomic.Int32
	for i, id := range []string{"d1", "d2"} {
		dev := e.Dial(t, e.AddDevice(t, id), iotdevice.Options{})
		dev.OnMethod("ping", func(context.Context, json.RawMessage) (int, any) {
			calls[i].Add(1)
			return 200, id
		})
	}
	ctx := testCtx(t)
	for i := 0; i < 20; i++ {
		res, err := svc.InvokeMethod(ctx, "d1", iothub.MethodRequest{MethodName: "ping"})
		if err != nil || string(res.Payload) != `"d1"` {
			t.Fatalf("call %d: %+v, %v", i, res, err)
		}
	}
	if calls[0].Load() != 20 || calls[1].Load() != 0 {
		t.Fatalf("calls: d1=%d d2=%d", calls[0].Load(), calls[1].Load())
	}
	res, err := svc.InvokeMethod(ctx, "d2", iothub.MethodRequest{MethodName: "nothing"})
	if err != nil || res.Status != 404 {
		t.Fatalf("unknown method: %+v, %v", res, err)
	}
}

func TestMethodErrors(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	cs := e.AddDevice(t, "slow")
	ctx := testCtx(t)
	_, err := svc.InvokeMethod(ctx, "slow", iothub.MethodRequest{MethodName: "m"})
	wantCode(t, err, iothub.DeviceNotOnline)
	_, err = svc.InvokeMethod(ctx, "ghost", iothub.MethodRequest{MethodName: "m"})
	wantCode(t, err, iothub.DeviceNotFound)
	three := 3
	_, err = svc.InvokeMethod(ctx, "slow", iothub.MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: &three})
	wantCode(t, err, iothub.ArgumentInvalid)

	dev := e.Dial(t, cs, iotdevice.Options{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	dev.OnMethod("hang", func(context.Context, json.RawMessage) (int, any) { <-release; return 200, nil })
	five := 5
	start := time.Now()
	_, err = svc.InvokeMethod(ctx, "slow", iothub.MethodRequest{MethodName: "hang", ResponseTimeoutInSeconds: &five})
	wantCode(t, err, iothub.GatewayTimeout)
	if took := time.Since(start); took > 5*time.Second || took < 4*time.Second {
		t.Fatalf("504 after %v, want just before the 5 s response timeout", took)
	}
}

// Ensure that a device connecting within connectTimeoutInSeconds is reached.
func TestMethodWaitsForConnect(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "late")
	go func() {
		time.Sleep(300 * time.Millisecond)
		dev, err := iotdevice.New(cs, iotdevice.Options{CAFile: e.CAFile()})
		if err != nil {
			return
		}
		dev.OnMethod("hello", func(context.Context, json.RawMessage) (int, any) { return 201, "hi" })
		if dev.Connect(context.Background()) == nil {
			t.Cleanup(dev.Close)
		}
	}()
	ten := 10
	res, err := e.Service(t).InvokeMethod(testCtx(t), "late", iothub.MethodRequest{MethodName: "hello", ConnectTimeoutInSeconds: &ten})
	if err != nil || res.Status != 201 {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestDesiredAndTwinErrors(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	dev := e.Dial(t, e.AddDevice(t, "d1"), iotdevice.Options{})
	got := make(chan string, 4)
	dev.OnDesired(func(p map[string]any, v int64) {
		b, _ := json.Marshal(p)
		got <- string(b) + " " + string(rune('0'+v))
	})
	ctx := testCtx(t)
	tw, _ := svc.Twin(ctx, "d1")
	if _, err := svc.UpdateTwin(ctx, "d1", iothub.NewTwinPatch(nil, map[string]any{"telemetryInterval": 10}), tw.ETag); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != `{"telemetryInterval":10} 2` {
		t.Fatalf("desired notification %s", g)
	}
	_, err := svc.UpdateTwin(ctx, "d1", iothub.NewTwinPatch(map[string]any{"a": 1}, nil), tw.ETag)
	wantCode(t, err, iothub.PreconditionFailed)
	props, err := dev.Twin(ctx)
	if err != nil || props.Desired.Version != 2 || props.Desired.Props["telemetryInterval"] != json.Number("10") {
		t.Fatalf("device twin %+v, %v", props, err)
	}
	_, err = dev.UpdateReported(ctx, map[string]any{"bad": []any{nil}})
	wantCode(t, err, iothub.ArgumentInvalid)
	deep := map[string]any{"v": 1}
	for i := 0; i < 11; i++ {
		deep = map[string]any{"n": deep}
	}
	_, err = dev.UpdateReported(ctx, deep)
	wantCode(t, err, iothub.ArgumentInvalid)
	if v, err := dev.UpdateReported(ctx, map[string]any{"ok": true}); err != nil || v != 2 {
		t.Fatalf("a good patch after bad ones: %d, %v", v, err)
	}
}

func TestTelemetryAndWebSocket(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "ws-1")
	dev := e.Dial(t, e.WebSocketString(cs), iotdevice.Options{Transport: iotdevice.MQTTWS})
	ctx := testCtx(t)
	if err := dev.SendEvent(ctx, []byte(`{"t":21.5}`), topic.Properties{}.Set(topic.MessageID, "m-1").Set("alert", "high temp")); err != nil {
		t.Fatal(err)
	}
	msgs, err := e.Service(t).Messages(ctx, "ws-1")
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != `{"t":21.5}` || msgs[0].Properties["alert"] != "high temp" || msgs[0].Properties["$.mid"] != "m-1" {
		t.Fatalf("messages %+v, %v", msgs, err)
	}
	if _, err := dev.UpdateReported(ctx, map[string]any{"over": "websocket"}); err != nil {
		t.Fatal(err)
	}
}

// raw says how rawClient connects.
type raw struct {
	clean    bool                // CleanSession
	password string              // instead of a fresh, valid token
	protocol uint                // MQTT protocol level; 0 means 4 (3.1.1)
	msgs     chan<- paho.Message // receives what the hub sends, if set
	lost     chan struct{}       // closed when the hub drops the connection, if set
	present  *bool               // receives the CONNACK's session-present flag, if set
	clientID *string             // instead of the device id, if set
	will     *willOpt            // a will, if set
}

// willOpt is a will of rawClient's CONNECT.
type willOpt struct {
	topic, payload string
	qos            byte
	retain         bool
}

// rawClient connects with paho directly, to control the session, the
// credentials and what is subscribed.
func rawClient(t *testing.T, e *emulatortest.Env, cs connstr.Device, r raw) (paho.Client, error) {
	t.Helper()
	if r.password == "" {
		tok, _ := sas.New(sas.DeviceResource(cs.HostName, cs.DeviceID, ""), "", cs.SharedAccessKey, time.Now().Add(time.Hour))
		r.password = tok.String()
	}
	if r.protocol == 0 {
		r.protocol = 4
	}
	id := cs.DeviceID
	if r.clientID != nil {
		id = *r.clientID
	}
	o := paho.NewClientOptions().AddBroker("ssl://" + e.MQTTAddr()).SetClientID(id).
		SetUsername(topic.Username{Host: cs.HostName, DeviceID: cs.DeviceID, APIVersion: iothub.APIVersion}.String()).
		SetPassword(r.password).SetCleanSession(r.clean).SetProtocolVersion(r.protocol).SetAutoReconnect(false).
		SetTLSConfig(e.TLSConfig()).SetConnectTimeout(10 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			if r.msgs != nil {
				r.msgs <- m
			}
		})
	if r.will != nil {
		o.SetWill(r.will.topic, r.will.payload, r.will.qos, r.will.retain)
	}
	if r.lost != nil {
		o.SetConnectionLostHandler(func(paho.Client, error) { close(r.lost) })
	}
	c := paho.NewClient(o)
	tk := c.Connect()
	tk.WaitTimeout(10 * time.Second)
	if tk.Error() != nil {
		return nil, tk.Error()
	}
	if r.present != nil {
		*r.present = tk.(*paho.ConnectToken).SessionPresent()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// waitLost waits for the hub to drop a connection.
func waitLost(t *testing.T, lost <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the connection stayed open", what)
	}
}

func recv(t *testing.T, msgs <-chan paho.Message) paho.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message from the hub")
		return nil
	}
}

// Ensure that with CleanSession=0 the subscriptions survive a reconnect
// and an emulator restart, as the official Node SDK needs: it does not
// re-subscribe its twin topics.
func TestPersistentSession(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "p1")
	msgs := make(chan paho.Message, 8)
	c, err := rawClient(t, e, cs, raw{msgs: msgs})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(topic.FilterTwinResponses, 0, nil).Wait()
	c.Publish(topic.PatchReported("1").String(), 1, false, []byte(`{"a":1}`)).Wait()
	if m := recv(t, msgs); m.Topic() != "$iothub/twin/res/204/?$rid=1&$version=2" || len(m.Payload()) != 0 {
		t.Fatalf("got %s %q", m.Topic(), m.Payload())
	}
	c.Disconnect(0)

	e = e.Restart(t)
	var present bool
	c, err = rawClient(t, e, cs, raw{msgs: msgs, present: &present})
	if err != nil {
		t.Fatal(err)
	}
	if !present {
		t.Fatal("CONNACK after a restart does not say the session is present")
	}
	c.Publish(topic.GetTwin("2").String(), 0, false, []byte(" ")).Wait()
	m := recv(t, msgs)
	if m.Topic() != "$iothub/twin/res/200/?$rid=2" || string(m.Payload()) != `{"desired":{"$version":1},"reported":{"a":1,"$version":2}}` {
		t.Fatalf("after restart: %s %s", m.Topic(), m.Payload())
	}
	c.Disconnect(0)
	c, _ = rawClient(t, e, cs, raw{clean: true, msgs: msgs, present: &present})
	if present {
		t.Fatal("a clean session was reported present")
	}
	c.Publish(topic.GetTwin("3").String(), 1, false, nil).Wait()
	select {
	case m := <-msgs:
		t.Fatalf("a clean session received %s", m.Topic())
	case <-time.After(300 * time.Millisecond):
	}
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "d1")
	other := e.AddDevice(t, "d2")
	expired, _ := sas.New(sas.DeviceResource(cs.HostName, "d1", ""), "", cs.SharedAccessKey, time.Now().Add(-time.Hour))
	othersToken, _ := sas.New(sas.DeviceResource(cs.HostName, "d2", ""), "", other.SharedAccessKey, time.Now().Add(time.Hour))
	for name, pw := range map[string]string{
		"WrongKey":     mustToken(t, cs, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
		"Expired":      expired.String(),
		"OtherDevices": othersToken.String(),
		"Garbage":      "password",
	} {
		if _, err := rawClient(t, e, cs, raw{password: pw}); err == nil || !strings.Contains(err.Error(), "not Authorized") {
			t.Errorf("%s: got %v, want CONNACK 5 (not authorized)", name, err)
		}
	}
}

func mustToken(t *testing.T, cs connstr.Device, key string) string {
	tok, err := sas.New(sas.DeviceResource(cs.HostName, cs.DeviceID, ""), "", key, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

// Ensure that a bad packet or topic closes only the offending connection.
func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	good := e.Dial(t, e.AddDevice(t, "good"), iotdevice.Options{})
	good.OnMethod("ping", func(context.Context, json.RawMessage) (int, any) { return 200, "pong" })
	bad := e.AddDevice(t, "bad")
	ctx := testCtx(t)
	check := func(name string) {
		t.Helper()
		res, err := e.Service(t).InvokeMethod(ctx, "good", iothub.MethodRequest{MethodName: "ping"})
		if err != nil || string(res.Payload) != `"pong"` {
			t.Fatalf("%s: the other device was disturbed: %+v, %v", name, res, err)
		}
	}
	closes := map[string]func(paho.Client){
		"OtherDevicesTopic": func(c paho.Client) { c.Publish("devices/good/messages/events/", 1, false, "x") },
		"UnknownTopic":      func(c paho.Client) { c.Publish("sensors/temperature", 0, false, "x") },
		"QoS2":              func(c paho.Client) { c.Publish("devices/bad/messages/events/", 2, false, "x") },
		"HubTopic":          func(c paho.Client) { c.Publish(topic.Desired(1).String(), 0, false, "{}") },
		"OtherDevicesFilter": func(c paho.Client) {
			c.Subscribe(topic.FilterC2D("good"), 1, nil)
		},
	}
	for name, act := range closes {
		lost := make(chan struct{})
		c, err := rawClient(t, e, bad, raw{lost: lost})
		if err != nil {
			t.Fatalf("%s: connect: %v", name, err)
		}
		act(c)
		waitLost(t, lost, name)
		check(name)
	}

	t.Run("MalformedPacket", func(t *testing.T) {
		conn, err := tls.Dial("tcp", e.MQTTAddr(), e.TLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02}) // CONNECT with an invalid remaining length
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 16))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("the connection was not closed: %v", err)
		}
		check("MalformedPacket")
	})
}

// Ensure that the hub closes a connection whose token expires.
func TestTokenExpiryCloses(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.TokenSkew = -1 }))
	cs := e.AddDevice(t, "d1")
	tok, _ := sas.New(sas.DeviceResource(cs.HostName, "d1", ""), "", cs.SharedAccessKey, time.Now().Add(2*time.Second))
	lost := make(chan struct{})
	if _, err := rawClient(t, e, cs, raw{password: tok.String(), lost: lost}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	waitLost(t, lost, "expired token")
}

// Ensure that REST errors have the IoT Hub shape: status, iothub-errorcode
// header, JSON envelope.
func TestRESTErrors(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	hc := e.HTTPClient()
	svc := e.ServiceString()
	tok, _ := sas.New(svc.HostName, svc.SharedAccessKeyName, svc.SharedAccessKey, time.Now().Add(time.Hour))
	base := "https://" + svc.HostName
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		code                           string
	}{
		{"NoAPIVersion", "GET", "/devices/x", tok.String(), "", 400, "InvalidProtocolVersion"},
		{"UnknownAPIVersion", "GET", "/devices/x?api-version=2099-01-01", tok.String(), "", 400, "InvalidProtocolVersion"},
		{"NoAuth", "GET", "/devices/x?api-version=2021-04-12", "", "", 401, "IotHubUnauthorizedAccess"},
		{"UnknownRoute", "GET", "/messages/serviceBound/feedback?api-version=2021-04-12", tok.String(), "", 404, "NotFound"},
		{"UnknownDevice", "GET", "/devices/x?api-version=2021-04-12", tok.String(), "", 404, "DeviceNotFound"},
		{"UnknownConfiguration", "GET", "/configurations/x?api-version=2021-04-12", tok.String(), "", 404, "ConfigurationNotFound"},
		{"BadJSON", "PUT", "/devices/x?api-version=2021-04-12", tok.String(), "{", 400, "IotHubFormatError"},
		{"InvalidID", "PUT", "/devices/a%20b?api-version=2021-04-12", tok.String(), "{}", 400, "ArgumentInvalid"},
		{"BulkUnknownMode", "POST", "/devices?api-version=2021-04-12", tok.String(), `[{"id":"b","importMode":"upsert"}]`, 400, "IotHubFormatError"},
		{"BulkNotArray", "POST", "/devices?api-version=2021-04-12", tok.String(), `{"id":"b"}`, 400, "IotHubFormatError"},
		{"BulkEmpty", "POST", "/devices?api-version=2021-04-12", tok.String(), `[]`, 400, "ArgumentInvalid"},
		{"MethodOffline", "POST", "/twins/x/methods?api-version=2021-04-12", tok.String(), `{"methodName":"m"}`, 404, "DeviceNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var env iothub.Envelope
			json.NewDecoder(resp.Body).Decode(&env)
			if resp.StatusCode != tt.status || resp.Header.Get("iothub-errorcode") != tt.code ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || env.Message == "" {
				t.Fatalf("got %d %q %q %+v", resp.StatusCode, resp.Header.Get("iothub-errorcode"), resp.Header.Get("Content-Type"), env)
			}
		})
	}
}

// Ensure that the admin port serves health and the CA.
func TestAdmin(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	resp, err := http.Get("http://" + e.AdminAddr() + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v", err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + e.AdminAddr() + "/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 64)
	n, _ := resp.Body.Read(b)
	if !strings.HasPrefix(string(b[:n]), "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("ca.pem: %q", b[:n])
	}
}

// Ensure that queries see what real devices report over MQTT, page with
// continuation tokens, and reject what Azure rejects.
func TestQuery(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	for i := 1; i <= 5; i++ {
		id := "q-" + string(rune('0'+i))
		dev := e.Dial(t, e.AddDevice(t, id), iotdevice.Options{})
		if i%2 == 1 {
			if _, err := dev.UpdateReported(ctx, map[string]any{"rebootTime": "2024-01-0" + string(rune('0'+i)) + "T00:00:00Z"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.AddDevice(t, "query") // a device named like the route
	rows, err := svc.Query(ctx, "SELECT * FROM devices WHERE IS_DEFINED(properties.reported.rebootTime)", 2)
	if err != nil || len(rows) != 3 {
		t.Fatalf("got %d rows, %v", len(rows), err)
	}
	var tw iothub.Twin
	json.Unmarshal(rows[2], &tw)
	if tw.DeviceID != "q-5" || tw.Properties.Reported.Props["rebootTime"] != "2024-01-05T00:00:00Z" {
		t.Fatalf("last row %s", rows[2])
	}
	rows, err = svc.Query(ctx, "SELECT deviceId, properties.reported.rebootTime AS rebootTime FROM devices WHERE properties.reported.rebootTime > '2024-01-02'", 0)
	if err != nil || len(rows) != 2 || string(rows[0]) != `{"deviceId":"q-3","rebootTime":"2024-01-03T00:00:00Z"}` {
		t.Fatalf("projection: %s, %v", rows, err)
	}
	rows, err = svc.Query(ctx, "SELECT connectionState, COUNT() AS n FROM devices GROUP BY connectionState", 0)
	if err != nil || len(rows) != 2 {
		t.Fatalf("group by: %s, %v", rows, err)
	}
	_, err = svc.Query(ctx, "SELECT * FROM devices ORDER BY deviceId", 0)
	if iothub.CodeOf(err) != iothub.ArgumentInvalid || !strings.Contains(err.Error(), "position 22") {
		t.Fatalf("ORDER BY: %v", err)
	}
	if d, err := svc.Device(ctx, "query"); err != nil || d.DeviceID != "query" {
		t.Fatalf("GET /devices/query: %+v, %v", d, err)
	}
}
