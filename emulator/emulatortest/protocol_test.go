package emulatortest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Ensure that subscriptions are granted at most QoS 1 and that the hub
// delivers method requests at QoS 0 whatever the subscription asked
// (device-protocol §5.1, §5.2).
func TestSubscriptionQoS(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "q1")
	msgs := make(chan paho.Message, 4)
	c, err := rawClient(t, e, cs, raw{clean: true, msgs: msgs})
	if err != nil {
		t.Fatal(err)
	}
	tok := c.SubscribeMultiple(map[string]byte{topic.FilterMethods: 2, topic.FilterTwinResponses: 1, topic.FilterDesired: 0}, nil)
	tok.Wait()
	granted := tok.(*paho.SubscribeToken).Result()
	if granted[topic.FilterMethods] != 1 || granted[topic.FilterTwinResponses] != 1 || granted[topic.FilterDesired] != 0 {
		t.Fatalf("granted %v", granted)
	}
	go e.Service(t).InvokeMethod(context.Background(), "q1", iothub.MethodRequest{MethodName: "m"})
	m := recv(t, msgs)
	if m.Qos() != 0 || m.Topic() != "$iothub/methods/POST/m/?$rid=1" || string(m.Payload()) != "null" {
		t.Fatalf("method request %s qos %d payload %q", m.Topic(), m.Qos(), m.Payload())
	}
}

// Ensure that in lenient mode an invalid filter gets SUBACK 0x80 and the
// connection stays open.
func TestLenientSubscribe(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.Lenient = true }))
	cs := e.AddDevice(t, "l1")
	c, err := rawClient(t, e, cs, raw{clean: true})
	if err != nil {
		t.Fatal(err)
	}
	tok := c.SubscribeMultiple(map[string]byte{topic.FilterC2D("other"): 1, topic.FilterMethods: 0}, nil)
	tok.Wait()
	granted := tok.(*paho.SubscribeToken).Result()
	if granted[topic.FilterC2D("other")] != 0x80 || granted[topic.FilterMethods] != 0 {
		t.Fatalf("granted %v", granted)
	}
	if !c.IsConnectionOpen() {
		t.Fatal("the connection closed in lenient mode")
	}
}

// Ensure that MQTT 3.1 clients are refused (the hub offers 3.1.1 only).
func TestProtocolVersion(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "v3")
	_, err := rawClient(t, e, cs, raw{protocol: 3})
	if err == nil || !strings.Contains(err.Error(), "unacceptable protocol version") {
		t.Fatalf("MQTT 3.1: %v", err)
	}
}

// Ensure the REST details clients depend on: ids with reserved characters,
// a trailing slash, quoted ETag headers, 204 on delete.
func TestRESTDetails(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := context.Background()
	for _, id := range []string{"dev#1", "a:b.c+d%e", "x?y=z", "o'brien$(1)"} {
		if _, err := svc.CreateDevice(ctx, iothub.Device{DeviceID: id}); err != nil {
			t.Fatalf("create %q: %v", id, err)
		}
		d, err := svc.Device(ctx, id)
		if err != nil || d.DeviceID != id {
			t.Fatalf("get %q: %+v, %v", id, d, err)
		}
		if _, err := svc.Twin(ctx, id); err != nil {
			t.Fatalf("twin %q: %v", id, err)
		}
	}
	hc := e.HTTPClient()
	s := e.ServiceString()
	tok, _ := sas.New(s.HostName, s.SharedAccessKeyName, s.SharedAccessKey, time.Now().Add(time.Hour))
	do := func(method, path string) *http.Response {
		req, _ := http.NewRequest(method, "https://"+s.HostName+path, nil)
		req.Header.Set("Authorization", tok.String())
		req.Header.Set("If-Match", `"*"`)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := do("GET", "/devices/?top=2&api-version=2021-04-12"); r.StatusCode != 200 {
		t.Fatalf("trailing slash: %d", r.StatusCode)
	}
	r := do("GET", "/devices/"+url.PathEscape("dev#1")+"?api-version=2021-04-12")
	if etag := r.Header.Get("ETag"); len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Fatalf("ETag header %q", etag)
	}
	if r := do("DELETE", "/devices/"+url.PathEscape("dev#1")+"?api-version=2021-04-12"); r.StatusCode != 204 {
		t.Fatalf("delete: %d", r.StatusCode)
	}
}

// watchLoss connects a device and returns a channel closed when the hub
// drops the connection.
func watchLoss(t *testing.T, e *emulatortest.Env, cs connstr.Device) (paho.Client, <-chan struct{}) {
	t.Helper()
	lost := make(chan struct{})
	c, err := rawClient(t, e, cs, raw{lost: lost})
	if err != nil {
		t.Fatalf("connect %s: %v", cs.DeviceID, err)
	}
	return c, lost
}

// Ensure that a second connection of a device replaces the first, and that
// disabling or deleting a connected device closes its connection.
func TestConnectionLifecycle(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := context.Background()
	cs := e.AddDevice(t, "life")
	_, lost1 := watchLoss(t, e, cs)
	second, _ := watchLoss(t, e, cs)
	waitLost(t, lost1, "replaced connection")
	// The hub records a connection just after its CONNACK.
	eventually(t, "the second connection is the device's connection", func() error {
		if !second.IsConnectionOpen() || !e.Hub().Connected("life") {
			return errors.New("not connected")
		}
		return nil
	})
	second.Disconnect(0)

	_, lost := watchLoss(t, e, cs)
	d, _ := svc.Device(ctx, "life")
	d.Status = iothub.StatusDisabled
	if _, err := svc.UpdateDevice(ctx, d, d.ETag); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "disabled device")
	if _, err := rawClient(t, e, cs, raw{}); err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Fatalf("a disabled device connected: %v", err)
	}
	d.Status = iothub.StatusEnabled
	d, err := svc.UpdateDevice(ctx, d, "*")
	if err != nil {
		t.Fatal(err)
	}
	_, lost = watchLoss(t, e, e.DeviceString("life", d.Authentication.SymmetricKey.PrimaryKey))
	if err := svc.DeleteDevice(ctx, "life"); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lost, "deleted device")
}

// Ensure that a reported patch that is not a JSON object gets a 400 twin
// response with the hub's JSON error and the connection stays usable, and
// that telemetry over 256 KB closes the connection (device-protocol §6,
// §11.2).
func TestBadPayloads(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "bp")
	msgs := make(chan paho.Message, 4)
	c, err := rawClient(t, e, cs, raw{clean: true, msgs: msgs})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(topic.FilterTwinResponses, 0, nil).Wait()
	for i, body := range []string{`[1]`, `{"a":`, `"text"`} {
		rid := string(rune('a' + i))
		c.Publish(topic.PatchReported(rid).String(), 1, false, body).Wait()
		m := recv(t, msgs)
		var de iothub.DeviceError
		if m.Topic() != "$iothub/twin/res/400/?$rid="+rid || json.Unmarshal(m.Payload(), &de) != nil || de.ErrorCode != 400004 {
			t.Fatalf("%s: got %s %s", body, m.Topic(), m.Payload())
		}
	}
	c.Publish(topic.GetTwin("ok").String(), 0, false, " ").Wait()
	if m := recv(t, msgs); m.Topic() != "$iothub/twin/res/200/?$rid=ok" {
		t.Fatalf("after bad patches: %s", m.Topic())
	}
	lost := make(chan struct{})
	big, err := rawClient(t, e, cs, raw{lost: lost})
	if err != nil {
		t.Fatal(err)
	}
	big.Publish(topic.Event("bp", "", nil).String(), 1, false, strings.Repeat("x", 300*1024))
	waitLost(t, lost, "telemetry over 256 KB")
}

// Ensure that devices that connected with persistent sessions and left
// cost the broker nothing: their clients are forgotten (the hub keeps
// the sessions), and one that comes back finds its session present.
func TestDisconnectedSessionsForgotten(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	var css []connstr.Device
	for i := range 20 {
		cs := e.AddDevice(t, fmt.Sprintf("transient-%02d", i))
		css = append(css, cs)
		c, err := rawClient(t, e, cs, raw{})
		if err != nil {
			t.Fatal(err)
		}
		c.Subscribe(topic.FilterMethods, 0, nil).WaitTimeout(10 * time.Second)
		c.Disconnect(0)
	}
	eventually(t, "the broker forgets the disconnected clients", func() error {
		if n := e.MQTTClients(); n != 0 {
			return fmt.Errorf("%d clients held", n)
		}
		return nil
	})
	var present bool
	c, err := rawClient(t, e, css[0], raw{present: &present})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	if !present {
		t.Fatal("a device that came back found no session")
	}
}
