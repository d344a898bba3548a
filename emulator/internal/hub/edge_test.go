package hub_test

import (
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// Ensure the IoT Edge registry rules as Azure applies them: an edge
// device gets ms-azure-iot-edge://{id}-{generationId} and its $edgeAgent
// and $edgeHub modules; a leaf device that names the parent's scope in
// deviceScope gets it in parentScopes too; a nested edge device keeps its
// own scope and names its parent in parentScopes; a parent must be an
// edge device of this hub, never the device itself or a descendant, and a
// hierarchy has at most five layers of edge devices.
func TestEdgeScopes(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	put := func(d iothub.Device, ifMatch string) (iothub.Device, error) { return h.PutDevice(ctx, d, ifMatch) }
	edge := func(id string, parents ...string) (iothub.Device, error) {
		return put(iothub.Device{DeviceID: id, Capabilities: iothub.Capabilities{IoTEdge: true}, ParentScopes: parents}, "")
	}
	top, err := edge("top")
	if err != nil || top.DeviceScope != "ms-azure-iot-edge://top-"+top.GenerationID || len(top.ParentScopes) != 0 {
		t.Fatalf("edge device %+v, %v", top, err)
	}
	for _, m := range []string{"$edgeAgent", "$edgeHub"} {
		if mod, err := h.Module("top", m); err != nil || mod.ManagedBy != "IotEdge" || mod.Authentication.SymmetricKey.PrimaryKey == "" {
			t.Errorf("module %s: %+v, %v", m, mod, err)
		}
	}
	leaf, err := put(iothub.Device{DeviceID: "leaf", DeviceScope: top.DeviceScope}, "")
	if err != nil || leaf.DeviceScope != top.DeviceScope || len(leaf.ParentScopes) != 1 || leaf.ParentScopes[0] != top.DeviceScope {
		t.Fatalf("leaf device %+v, %v", leaf, err)
	}
	if tw, _ := h.Twin("leaf"); tw.DeviceScope != top.DeviceScope || len(tw.ParentScopes) != 1 {
		t.Errorf("the leaf's twin: %+v", tw)
	}
	if _, err := h.Module("leaf", "$edgeAgent"); err == nil {
		t.Error("a leaf device got an $edgeAgent")
	}
	mid, err := edge("mid", top.DeviceScope)
	if err != nil || mid.DeviceScope == top.DeviceScope || mid.ParentScopes[0] != top.DeviceScope {
		t.Fatalf("nested edge device %+v, %v", mid, err)
	}
	// Five layers: top, mid, l3, l4, l5; a sixth is refused.
	parent := mid
	for _, id := range []string{"l3", "l4", "l5"} {
		if parent, err = edge(id, parent.DeviceScope); err != nil {
			t.Fatalf("layer %s: %v", id, err)
		}
	}
	if _, err := edge("l6", parent.DeviceScope); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Errorf("a sixth layer: %v", err)
	}
	// A leaf under the fifth layer is fine.
	if _, err := put(iothub.Device{DeviceID: "deep-leaf", DeviceScope: parent.DeviceScope}, ""); err != nil {
		t.Errorf("a leaf under the fifth layer: %v", err)
	}
	refused := map[string]iothub.Device{
		"a leaf device as parent":  {DeviceID: "x1", DeviceScope: iothub.EdgeScope("leaf", leaf.GenerationID)},
		"an unknown parent":        {DeviceID: "x2", ParentScopes: []string{"ms-azure-iot-edge://ghost-1"}},
		"a stale generation":       {DeviceID: "x3", DeviceScope: "ms-azure-iot-edge://top-1"},
		"not a scope":              {DeviceID: "x4", DeviceScope: "top"},
		"two parents":              {DeviceID: "x5", ParentScopes: []string{top.DeviceScope, mid.DeviceScope}},
		"disagreeing fields":       {DeviceID: "x6", DeviceScope: top.DeviceScope, ParentScopes: []string{mid.DeviceScope}},
		"another edge's own scope": {DeviceID: "x7", Capabilities: iothub.Capabilities{IoTEdge: true}, DeviceScope: top.DeviceScope},
	}
	for name, d := range refused {
		if _, err := put(d, ""); iothub.CodeOf(err) != iothub.ArgumentInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	// top cannot become a child of its own descendant.
	top.ParentScopes = []string{parent.DeviceScope}
	if _, err := put(top, "*"); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Errorf("a cycle: %v", err)
	}
	// The scopes survive a restart, and a query sees them.
	h.reopen(t)
	if d, _ := h.Device("leaf"); d.DeviceScope != top.DeviceScope || d.ParentScopes[0] != top.DeviceScope {
		t.Errorf("after a restart: %+v", d)
	}
	res, err := h.Query("SELECT deviceId FROM devices WHERE deviceScope = '" + top.DeviceScope + "' AND capabilities.iotEdge = false")
	if err != nil || jsonOf(res.Rows) != `[{"deviceId":"leaf"}]` {
		t.Errorf("the query of top's leaf devices: %s, %v", jsonOf(res.Rows), err)
	}
}
