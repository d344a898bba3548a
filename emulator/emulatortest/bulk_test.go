package emulatortest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// Ensure that bulk registry operations apply each entry on its own, report
// the ones that failed with a 400 BulkRegistryOperationFailure, and refuse
// a malformed request as a whole (service-api §3.7).
func TestBulkRegistry(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)

	res, err := svc.Bulk(ctx, []iothub.ExportImportDevice{
		{ID: "b1", ImportMode: iothub.ImportCreate, Tags: map[string]any{"room": "1"},
			Properties: &iothub.ImportTwinProperties{Desired: map[string]any{"interval": 5}}},
		{ID: "b2", ImportMode: iothub.ImportCreate, Status: iothub.StatusDisabled},
		{ID: "b1", ModuleID: "m", ImportMode: iothub.ImportCreate},
	})
	if err != nil || !res.IsSuccessful || len(res.Errors) != 0 {
		t.Fatalf("create: %+v, %v", res, err)
	}
	tw, err := svc.Twin(ctx, "b1")
	if err != nil || tw.Tags["room"] != "1" || fmt.Sprint(tw.Properties.Desired.Props["interval"]) != "5" {
		t.Fatalf("twin of a bulk-created device: %+v, %v", tw, err)
	}
	if d, err := svc.Device(ctx, "b2"); err != nil || d.Status != iothub.StatusDisabled || d.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("bulk-created device: %+v, %v", d, err)
	}
	if _, err := svc.Module(ctx, "b1", "m"); err != nil {
		t.Fatalf("bulk-created module: %v", err)
	}

	// A partial failure: the good entries are applied, the others listed.
	b2, _ := svc.Device(ctx, "b2")
	res, err = svc.Bulk(ctx, []iothub.ExportImportDevice{
		{ID: "b1", ImportMode: iothub.ImportCreate},
		{ID: "b3", ImportMode: iothub.ImportCreateOrUpdate},
		{ID: "b2", ImportMode: iothub.ImportUpdateIfMatchETag, ETag: "stale", Status: iothub.StatusEnabled},
		{ID: "b4", ImportMode: iothub.ImportUpdate},
		{ID: "b1", ModuleID: "m", ImportMode: iothub.ImportDeleteIfMatchETag, ETag: "nope"},
		{ID: "b3", ModuleID: "x", ImportMode: iothub.ImportUpdateTwin, Tags: map[string]any{"a": 1}},
		{ID: "b8", ImportMode: iothub.ImportCreateOrUpdate, Properties: &iothub.ImportTwinProperties{Reported: map[string]any{"a": 1}}},
	})
	wantCode(t, err, iothub.BulkRegistryOperationFailure)
	got := map[string]string{}
	for _, be := range res.Errors {
		k := be.DeviceID
		if be.ModuleID != nil {
			k += "/" + *be.ModuleID
		}
		got[k] += be.ErrorCode
	}
	want := map[string]string{"b1": "DeviceAlreadyExists", "b2": "PreconditionFailed", "b4": "DeviceNotFound", "b8": "ArgumentInvalid",
		"b1/m": "PreconditionFailed", "b3/x": "ModuleNotFound"}
	if res.IsSuccessful || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("errors %v, want %v", got, want)
	}
	if _, err := svc.Device(ctx, "b3"); err != nil {
		t.Fatalf("the good entry of a partly failed request was not applied: %v", err)
	}
	if d, _ := svc.Device(ctx, "b2"); d.ETag != b2.ETag {
		t.Fatal("an entry with a stale etag was applied")
	}

	// Node sends "Update" and "Delete"; the etag check and updateTwin.
	tw, _ = svc.Twin(ctx, "b1")
	res, err = svc.Bulk(ctx, []iothub.ExportImportDevice{
		{ID: "b2", ImportMode: "Update", Status: iothub.StatusEnabled, Authentication: &b2.Authentication},
		{ID: "b1", ImportMode: iothub.ImportUpdateTwinIfMatchETag, TwinETag: tw.ETag, Tags: map[string]any{"floor": 2}},
		{ID: "b3", ImportMode: "Delete"},
	})
	if err != nil {
		t.Fatalf("update, updateTwin, delete: %+v, %v", res, err)
	}
	if d, _ := svc.Device(ctx, "b2"); d.Status != iothub.StatusEnabled || d.Authentication.SymmetricKey != b2.Authentication.SymmetricKey {
		t.Fatalf("bulk update: %+v", d)
	}
	if tw, _ := svc.Twin(ctx, "b1"); tw.Tags["room"] != "1" || fmt.Sprint(tw.Tags["floor"]) != "2" {
		t.Fatalf("updateTwin merges tags: %v", tw.Tags)
	}
	_, err = svc.Device(ctx, "b3")
	wantCode(t, err, iothub.DeviceNotFound)

	// Malformed requests change nothing.
	_, err = svc.Bulk(ctx, []iothub.ExportImportDevice{{ID: "b5"}, {ID: "b5"}})
	wantCode(t, err, iothub.DeviceDefinedMultipleTimes)
	many := make([]iothub.ExportImportDevice, iothub.MaxBulkDevices+1)
	for i := range many {
		many[i] = iothub.ExportImportDevice{ID: fmt.Sprintf("many-%d", i)}
	}
	_, err = svc.Bulk(ctx, many)
	wantCode(t, err, iothub.TooManyDevices)
	_, err = svc.Bulk(ctx, []iothub.ExportImportDevice{{ID: "b6"}, {ID: "bad id"}})
	wantCode(t, err, iothub.ArgumentInvalid)
	for _, id := range []string{"b5", "b6", "b8", "many-0"} {
		if _, err := svc.Device(ctx, id); iothub.CodeOf(err) != iothub.DeviceNotFound {
			t.Fatalf("%s exists after a refused request: %v", id, err)
		}
	}

	// A bulk-created device connects with its generated key.
	d, _ := svc.Device(ctx, "b2")
	e.Dial(t, e.DeviceString("b2", d.Authentication.SymmetricKey.PrimaryKey), iotdevice.Options{})
}

// Ensure that a bulk create is applied whole or not at all: an entry
// whose twin cannot be stored (tags over Azure's 8 KB) leaves no device
// behind, so its retry with smaller tags creates it, with them, in one
// twin version.
func TestBulkCreateWhole(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	svc := e.Service(t)
	ctx := testCtx(t)
	big := map[string]any{}
	for _, k := range []string{"a", "b", "c"} {
		big[k] = strings.Repeat("x", 3000) // each value fits, together they do not
	}
	res, err := svc.Bulk(ctx, []iothub.ExportImportDevice{{ID: "whole", ImportMode: iothub.ImportCreate, Tags: big}})
	if iothub.CodeOf(err) != iothub.BulkRegistryOperationFailure || len(res.Errors) != 1 {
		t.Fatalf("a create with oversized tags: %+v, %v", res, err)
	}
	if _, err := svc.Device(ctx, "whole"); iothub.CodeOf(err) != iothub.DeviceNotFound {
		t.Fatalf("the failed entry left a device: %v", err)
	}
	res, err = svc.Bulk(ctx, []iothub.ExportImportDevice{{ID: "whole", ImportMode: iothub.ImportCreate, Tags: map[string]any{"size": "small"},
		Properties: &iothub.ImportTwinProperties{Desired: map[string]any{"interval": 7}}}})
	if err != nil || !res.IsSuccessful {
		t.Fatalf("the retry: %+v, %v", res, err)
	}
	tw, err := svc.Twin(ctx, "whole")
	if err != nil || tw.Tags["size"] != "small" || fmt.Sprint(tw.Properties.Desired.Props["interval"]) != "7" || tw.Version != 3 {
		t.Fatalf("twin after the retry: %+v, %v", tw, err)
	}
}
