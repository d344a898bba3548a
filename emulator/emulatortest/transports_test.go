package emulatortest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// Ensure that our device client works the same on every transport as
// far as the transport allows: a cloud-to-device message with its
// properties reaches the handler and is completed at the hub, and on
// MQTT and AMQP a direct method is answered, a reported patch stored and
// a desired change pushed; over HTTPS twins are refused as on Azure.
func TestDeviceTransports(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	for _, tr := range iotdevice.Transports {
		t.Run(string(tr), func(t *testing.T) {
			ctx := testCtx(t)
			id := "dev-" + string(tr)
			cs := e.TransportString(e.AddDevice(t, id), tr)
			cli, err := iotdevice.New(cs, iotdevice.Options{Transport: tr, CAFile: e.CAFile(), PollInterval: 50e6})
			if err != nil {
				t.Fatal(err)
			}
			c2d := make(chan topic.Properties, 1)
			desired := make(chan int64, 1)
			cli.OnC2D(func(body []byte, props topic.Properties) {
				c2d <- props.Set("body", string(body))
			})
			cli.OnDesired(func(p map[string]any, v int64) {
				if p["interval"] == json.Number("7") {
					desired <- v
				}
			})
			cli.OnMethod("ping", func(_ context.Context, p json.RawMessage) (int, any) { return 201, map[string]any{"echo": p} })
			if err := cli.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cli.Close)

			if err := svc.SendC2D(ctx, id, iothub.CloudToDeviceMessage{Body: "hello", MessageID: "c-1", Properties: map[string]string{"kind": "greeting"}}); err != nil {
				t.Fatal(err)
			}
			props := <-c2d
			for k, want := range map[string]string{"body": "hello", topic.MessageID: "c-1", "kind": "greeting"} {
				if got, _ := props.Get(k); got != want {
					t.Errorf("C2D %s = %q, want %q (%v)", k, got, want, props)
				}
			}
			eventually(t, "the message completed", func() error {
				d, err := svc.Device(ctx, id)
				if err == nil && d.CloudToDeviceMessageCount != 0 {
					err = fmt.Errorf("%d messages still queued", d.CloudToDeviceMessageCount)
				}
				return err
			})

			if tr == iotdevice.HTTPS {
				if _, err := cli.Twin(ctx); !errors.Is(err, iotdevice.ErrNotSupported) {
					t.Fatalf("twin over HTTPS: %v, want ErrNotSupported", err)
				}
				return
			}
			res, err := svc.InvokeMethod(ctx, id, iothub.MethodRequest{MethodName: "ping", Payload: json.RawMessage(`{"n":1}`)})
			if err != nil || res.Status != 201 || string(res.Payload) != `{"echo":{"n":1}}` {
				t.Fatalf("method: %+v, %v", res, err)
			}
			if _, err := cli.UpdateReported(ctx, map[string]any{"rebootTime": "now"}); err != nil {
				t.Fatal(err)
			}
			tw, err := svc.Twin(ctx, id)
			if err != nil || tw.Properties.Reported.Props["rebootTime"] != "now" {
				t.Fatalf("reported %+v, %v", tw.Properties.Reported, err)
			}
			if _, err := svc.UpdateTwin(ctx, id, iothub.NewTwinPatch(nil, map[string]any{"interval": 7}), "*"); err != nil {
				t.Fatal(err)
			}
			if v := <-desired; v != 2 {
				t.Errorf("desired version %d, want 2", v)
			}
			props2, err := cli.Twin(ctx)
			if err != nil || props2.Reported.Props["rebootTime"] != "now" || props2.Desired.Version != 2 {
				t.Fatalf("device twin %+v, %v", props2, err)
			}
		})
	}
}

// Ensure that a device on AMQP comes back by itself after the hub
// restarts: its links are attached again, and a cloud-to-device message
// sent while it was away and a method called after it returned reach it.
func TestAMQPDeviceReconnects(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	ctx := testCtx(t)
	cs := e.TransportString(e.AddDevice(t, "comeback"), iotdevice.AMQP)
	cli, err := iotdevice.New(cs, iotdevice.Options{Transport: iotdevice.AMQP, CAFile: e.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	cli.OnC2D(func(body []byte, _ topic.Properties) { got <- string(body) })
	cli.OnMethod("ping", func(context.Context, json.RawMessage) (int, any) { return 200, "pong" })
	if err := cli.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cli.Close)
	e = e.Restart(t)
	svc := e.Service(t)
	if err := svc.SendC2D(ctx, "comeback", iothub.CloudToDeviceMessage{Body: "while away"}); err != nil {
		t.Fatal(err)
	}
	if body := <-got; body != "while away" {
		t.Fatalf("C2D %q", body)
	}
	if err := cli.SendEvent(ctx, []byte("back"), nil); err != nil {
		t.Fatal(err)
	}
	res, err := svc.InvokeMethod(ctx, "comeback", iothub.MethodRequest{MethodName: "ping", Payload: json.RawMessage(`null`)})
	if err != nil || res.Status != 200 {
		t.Fatalf("method after the restart: %+v, %v", res, err)
	}
}

// Ensure that a connect refused for its credentials says so on every
// transport, as iotdevice.ErrUnauthorized, so a caller can stop instead
// of retrying: a wrong key, and a disabled device.
func TestConnectUnauthorized(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	ctx := testCtx(t)
	cs := e.AddDevice(t, "locked-out")
	wrong := cs
	wrong.SharedAccessKey = "d3Jvbmcga2V5IGZvciB0aGlzIGRldmljZSEhISEhISE="
	for _, tr := range []iotdevice.Transport{iotdevice.MQTT, iotdevice.AMQP, iotdevice.HTTPS} {
		c, err := iotdevice.New(e.TransportString(wrong, tr), iotdevice.Options{Transport: tr, CAFile: e.CAFile()})
		if err != nil {
			t.Fatal(err)
		}
		c.OnC2D(func([]byte, topic.Properties) {}) // HTTPS polls at connect
		if err := c.Connect(ctx); !errors.Is(err, iotdevice.ErrUnauthorized) {
			t.Errorf("%s with a wrong key: %v; want ErrUnauthorized", tr, err)
		}
	}
	svc := e.Service(t)
	d, _ := svc.Device(ctx, "locked-out")
	d.Status = iothub.StatusDisabled
	if _, err := svc.UpdateDevice(ctx, d, "*"); err != nil {
		t.Fatal(err)
	}
	c, err := iotdevice.New(cs, iotdevice.Options{CAFile: e.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); !errors.Is(err, iotdevice.ErrUnauthorized) {
		t.Errorf("a disabled device: %v; want ErrUnauthorized", err)
	}
}
