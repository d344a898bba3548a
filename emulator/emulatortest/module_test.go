package emulatortest_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
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

// Ensure that a module lives and dies with its device: disabling the
// device disconnects its modules and refuses them until it is enabled
// again, and deleting the device deletes its modules, connected ones
// disconnected, and none comes back after a restart.
func TestModulesFollowTheirDevice(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	dcs := e.AddDevice(t, "owner")
	var mods []connstr.Device
	for _, id := range []string{"a", "b"} {
		m, err := svc.CreateModule(ctx, iothub.Module{DeviceID: "owner", ModuleID: id})
		if err != nil {
			t.Fatal(err)
		}
		cs := dcs
		cs.ModuleID, cs.SharedAccessKey = id, m.Authentication.SymmetricKey.PrimaryKey
		mods = append(mods, cs)
	}
	connectOnce := func(cs connstr.Device) error {
		c, err := iotdevice.New(cs, iotdevice.Options{CAFile: e.CAFile()})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Connect(ctx)
	}
	watch := func(cs connstr.Device) chan bool {
		states := make(chan bool, 16)
		e.Dial(t, cs, iotdevice.Options{OnConnectionChange: func(up bool) { states <- up }})
		return states
	}
	waitDown := func(states chan bool, what string) {
		t.Helper()
		for {
			select {
			case up := <-states:
				if !up {
					return
				}
			case <-ctx.Done():
				t.Fatalf("%s: the module stayed connected", what)
			}
		}
	}

	states := watch(mods[0])
	d, err := svc.Device(ctx, "owner")
	if err != nil {
		t.Fatal(err)
	}
	d.Status = iothub.StatusDisabled
	if _, err := svc.UpdateDevice(ctx, d, "*"); err != nil {
		t.Fatal(err)
	}
	waitDown(states, "device disabled")
	if err := connectOnce(mods[1]); err == nil {
		t.Fatal("a module of a disabled device connected")
	}
	d.Status = iothub.StatusEnabled
	if _, err := svc.UpdateDevice(ctx, d, "*"); err != nil {
		t.Fatal(err)
	}
	if err := connectOnce(mods[1]); err != nil {
		t.Fatalf("a module of a device enabled again: %v", err)
	}

	states = watch(mods[1])
	if err := svc.DeleteDevice(ctx, "owner"); err != nil {
		t.Fatal(err)
	}
	waitDown(states, "device deleted")
	if _, err := svc.Module(ctx, "owner", "b"); iothub.CodeOf(err) != iothub.DeviceNotFound {
		t.Fatalf("a module of a deleted device: %v", err)
	}
	e = e.Restart(t)
	if got := len(e.Hub().Devices(100)); got != 0 {
		t.Fatalf("after a restart, %d identities", got)
	}
	if _, err := e.Service(t).Module(ctx, "owner", "a"); iothub.CodeOf(err) != iothub.DeviceNotFound {
		t.Fatalf("after a restart, a module of the deleted device: %v", err)
	}
}
