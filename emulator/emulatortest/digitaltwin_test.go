package emulatortest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// Ensure that a device's announced model becomes its twin's modelId and
// that the digital twin API reads it, writes desired properties through a
// JSON Patch and invokes component commands.
func TestDigitalTwin(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	const model = "dtmi:com:example:Thermostat;1"
	dev := e.Dial(t, e.AddDevice(t, "pnp"), iotdevice.Options{ModelID: model})
	dev.OnMethod("thermostat1*getReport", func(_ context.Context, p json.RawMessage) (int, any) { return 202, p })
	desired := make(chan map[string]any, 1)
	dev.OnDesired(func(p map[string]any, _ int64) { desired <- p })
	if _, err := dev.UpdateReported(ctx, map[string]any{"serialNumber": "SN-1", "thermostat1": map[string]any{"__t": "c", "maxTemp": 25}}); err != nil {
		t.Fatal(err)
	}
	if tw, err := svc.Twin(ctx, "pnp"); err != nil || tw.ModelID != model {
		t.Fatalf("modelId: %q, %v", tw.ModelID, err)
	}
	dt, err := svc.DigitalTwin(ctx, "pnp")
	meta, _ := dt["$metadata"].(map[string]any)
	comp, _ := dt["thermostat1"].(map[string]any)
	if err != nil || dt["$dtId"] != "pnp" || meta["$model"] != model || dt["serialNumber"] != "SN-1" || fmt.Sprint(comp["maxTemp"]) != "25" {
		t.Fatalf("digital twin: %v, %v", dt, err)
	}
	err = svc.UpdateDigitalTwin(ctx, "pnp", []iothub.JSONPatchOp{{Op: "add", Path: "/thermostat1/targetTemperature", Value: 21.5}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(<-desired); string(got) != `{"thermostat1":{"__t":"c","targetTemperature":21.5}}` {
		t.Fatalf("desired patch %s", got)
	}
	err = svc.UpdateDigitalTwin(ctx, "pnp", []iothub.JSONPatchOp{{Op: "add", Path: "/serialNumber/x", Value: 1}}, "")
	wantCode(t, err, iothub.InvalidDigitalTwinPatchPath)
	err = svc.UpdateDigitalTwin(ctx, "pnp", []iothub.JSONPatchOp{{Op: "add", Path: "/a", Value: 1}}, `"stale"`)
	wantCode(t, err, iothub.PreconditionFailed)
	res, err := svc.InvokeCommand(ctx, "pnp", "thermostat1", "getReport", map[string]any{"since": "today"})
	if err != nil || res.Status != 202 || string(res.Payload) != `{"since":"today"}` {
		t.Fatalf("command: %+v, %v", res, err)
	}
	_, err = svc.InvokeCommand(ctx, "ghost", "", "reboot", nil)
	wantCode(t, err, iothub.DeviceNotFound)
}
