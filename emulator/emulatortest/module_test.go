package emulatortest_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// Ensure that a module identity works like a device of its own: registry,
// MQTT connection with its own key, methods and twin, FROM devices.modules,
// and deletion with its device (service-api §3.8, device-protocol §11.6).
func TestModules(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	dcs := e.AddDevice(t, "gw")
	_, err := svc.CreateModule(ctx, iothub.Module{DeviceID: "nope", ModuleID: "m"})
	wantCode(t, err, iothub.DeviceNotFound)
	_, err = svc.CreateModule(ctx, iothub.Module{DeviceID: "gw", ModuleID: "$edgeAgent"})
	wantCode(t, err, iothub.ArgumentInvalid)
	m, err := svc.CreateModule(ctx, iothub.Module{DeviceID: "gw", ModuleID: "filter"})
	if err != nil || m.ModuleID != "filter" || m.DeviceID != "gw" || m.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("create module: %+v, %v", m, err)
	}
	_, err = svc.CreateModule(ctx, iothub.Module{DeviceID: "gw", ModuleID: "filter"})
	wantCode(t, err, iothub.ModuleAlreadyExistsOnDevice)
	_, err = svc.Module(ctx, "gw", "other")
	wantCode(t, err, iothub.ModuleNotFound)

	mcs := dcs
	mcs.ModuleID, mcs.SharedAccessKey = "filter", m.Authentication.SymmetricKey.PrimaryKey
	mod := e.Dial(t, mcs, iotdevice.Options{})
	mod.OnMethod("ping", func(context.Context, json.RawMessage) (int, any) { return 200, "module" })
	dev := e.Dial(t, dcs, iotdevice.Options{})
	dev.OnMethod("ping", func(context.Context, json.RawMessage) (int, any) { return 200, "device" })
	res, err := svc.InvokeModuleMethod(ctx, "gw", "filter", iothub.MethodRequest{MethodName: "ping"})
	if err != nil || string(res.Payload) != `"module"` {
		t.Fatalf("module method: %+v, %v", res, err)
	}
	res, err = svc.InvokeMethod(ctx, "gw", iothub.MethodRequest{MethodName: "ping"})
	if err != nil || string(res.Payload) != `"device"` {
		t.Fatalf("device method: %+v, %v", res, err)
	}
	if v, err := mod.UpdateReported(ctx, map[string]any{"stage": "filtering"}); err != nil || v != 2 {
		t.Fatalf("module reported: %d, %v", v, err)
	}
	if err := mod.SendEvent(ctx, []byte("x"), topic.Properties{}); err != nil {
		t.Fatal(err)
	}
	tw, err := svc.ModuleTwin(ctx, "gw", "filter")
	if err != nil || tw.ModuleID != "filter" || tw.Properties.Reported.Props["stage"] != "filtering" {
		t.Fatalf("module twin %+v, %v", tw, err)
	}
	dt, _ := svc.Twin(ctx, "gw")
	if _, ok := dt.Properties.Reported.Props["stage"]; ok {
		t.Fatal("the module's report reached the device twin")
	}
	rows, err := svc.Query(ctx, "SELECT * FROM devices.modules WHERE properties.reported.stage = 'filtering'", 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("devices.modules: %s, %v", rows, err)
	}
	rows, _ = svc.Query(ctx, "SELECT deviceId FROM devices", 0)
	if len(rows) != 1 {
		t.Fatalf("FROM devices lists modules: %s", rows)
	}
	if ms, err := svc.Modules(ctx, "gw"); err != nil || len(ms) != 1 {
		t.Fatalf("list modules: %+v, %v", ms, err)
	}
	mod.Close()
	dev.Close()
	e = e.Restart(t)
	svc = e.Service(t)
	if tw, err := svc.ModuleTwin(ctx, "gw", "filter"); err != nil || tw.Properties.Reported.Props["stage"] != "filtering" {
		t.Fatalf("module twin after a restart: %+v, %v", tw, err)
	}
	if d, err := svc.Device(ctx, "gw"); err != nil || d.DeviceID != "gw" {
		t.Fatalf("device after a restart: %+v, %v", d, err)
	}
	if err := svc.DeleteDevice(ctx, "gw"); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Module(ctx, "gw", "filter")
	wantCode(t, err, iothub.DeviceNotFound)
	if _, err := svc.CreateDevice(ctx, iothub.Device{DeviceID: "gw"}); err != nil {
		t.Fatal(err)
	}
	if ms, _ := svc.Modules(ctx, "gw"); len(ms) != 0 {
		t.Fatalf("a re-created device kept its old modules: %+v", ms)
	}
}
