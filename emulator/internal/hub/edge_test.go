package hub_test

import (
	"fmt"
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

// Ensure that IoT Edge deployments set the module twins of the edge
// devices they target as Azure does (az iot edge deployment create): the
// base deployment of highest priority, then the layered ones above it,
// paths merged into the base's sections; layered ones below the base
// are only targeted; leaf devices are not touched; the $edgeAgent twin
// lists the statuses its metrics count, and a report of the current
// desired version with status 200 counts as success.
// applyConfigurationContent sets one device's modules at once.
func TestEdgeDeployments(t *testing.T) {
	h := mustOpen(t, hub.Options{ConfigurationInterval: -1})
	for _, d := range []iothub.Device{
		{DeviceID: "gw", Capabilities: iothub.Capabilities{IoTEdge: true}},
		{DeviceID: "gw2", Capabilities: iothub.Capabilities{IoTEdge: true}},
		{DeviceID: "leaf"},
	} {
		if _, err := h.PutDevice(ctx, d, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := h.UpdateTwin(ctx, d.DeviceID, hub.TwinPatch{Tags: obj(t, `{"env":"prod"}`)}, "*", false); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := h.PutModule(ctx, iothub.Module{DeviceID: "gw", ModuleID: "sensor"}, ""); err != nil {
		t.Fatal(err)
	}
	deploy := func(id string, priority int, content string) {
		t.Helper()
		c := iothub.Configuration{ID: id, Priority: priority, TargetCondition: "tags.env = 'prod' AND deviceId = 'gw'",
			Content: iothub.ConfigurationContent{ModulesContent: obj(t, content)}}
		if _, _, err := h.PutConfiguration(ctx, c, ""); err != nil {
			t.Fatalf("deployment %s: %v", id, err)
		}
	}
	deploy("base", 10, `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"sensor":{"image":"s:1"}}}},
		"$edgeHub":{"properties.desired":{"routes":{"up":"FROM /messages/* INTO $upstream"}}},
		"sensor":{"properties.desired":{"interval":5}}}`)
	deploy("layer", 20, `{"$edgeAgent":{"properties.desired.modules.extra":{"image":"x:1"}},"sensor":{"properties.desired.interval":9}}`)
	deploy("below", 5, `{"$edgeAgent":{"properties.desired.modules.ignored":{"image":"i:1"}}}`)
	if err := h.AwaitConfigurations(ctx); err != nil {
		t.Fatal(err)
	}
	agent, _ := h.Twin(hub.Key("gw", "$edgeAgent"))
	if got := jsonOf(agent.Properties.Desired.Props); got != `{"modules":{"extra":{"image":"x:1"},"sensor":{"image":"s:1"}},"schemaVersion":"1.1"}` {
		t.Errorf("$edgeAgent desired %s", got)
	}
	if got := jsonOf(agent.Configurations); got != `{"base":{"status":"Applied"},"below":{"status":"Targeted"},"layer":{"status":"Applied"}}` {
		t.Errorf("$edgeAgent configurations %s", got)
	}
	edgeHub, _ := h.Twin(hub.Key("gw", "$edgeHub"))
	sensor, _ := h.Twin(hub.Key("gw", "sensor"))
	if jsonOf(edgeHub.Properties.Desired.Props) != `{"routes":{"up":"FROM /messages/* INTO $upstream"}}` || jsonOf(sensor.Properties.Desired.Props) != `{"interval":9}` {
		t.Errorf("$edgeHub %s, sensor %s", jsonOf(edgeHub.Properties.Desired.Props), jsonOf(sensor.Properties.Desired.Props))
	}
	if other, _ := h.Twin(hub.Key("gw2", "$edgeAgent")); len(other.Properties.Desired.Props) != 0 || len(other.Configurations) != 0 {
		t.Errorf("an edge device the condition leaves out: %+v", other)
	}
	// Metrics: targeted and applied; success once the agent reports the
	// desired version it runs with status 200.
	metrics := func() map[string]int64 {
		c, err := h.Configuration("base")
		if err != nil {
			t.Fatal(err)
		}
		return c.SystemMetrics.Results
	}
	if m := metrics(); m["targetedCount"] != 1 || m["appliedCount"] != 1 || m["reportedSuccessfulCount"] != 0 {
		t.Errorf("metrics before the report %v", m)
	}
	c, _, _ := h.Attach(ctx, hub.Key("gw", "$edgeAgent"), newLink(), false)
	report := fmt.Sprintf(`{"lastDesiredVersion":%d,"lastDesiredStatus":{"code":200}}`, agent.Properties.Desired.Version)
	if _, err := h.UpdateReported(ctx, hub.Key("gw", "$edgeAgent"), obj(t, report)); err != nil {
		t.Fatal(err)
	}
	h.Detach(c)
	if m := metrics(); m["reportedSuccessfulCount"] != 1 || m["reportedFailedCount"] != 0 {
		t.Errorf("metrics after the report %v", m)
	}
	// Set modules on one device, on top of what it has.
	content := iothub.ConfigurationContent{ModulesContent: obj(t, `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1"}},"$edgeHub":{"properties.desired":{}}}`)}
	if err := h.ApplyConfigurationContent(ctx, "gw2", content); err != nil {
		t.Fatal(err)
	}
	if a, _ := h.Twin(hub.Key("gw2", "$edgeAgent")); jsonOf(a.Properties.Desired.Props) != `{"schemaVersion":"1.1"}` {
		t.Errorf("gw2's $edgeAgent after applyConfigurationContent: %s", jsonOf(a.Properties.Desired.Props))
	}
	if err := h.ApplyConfigurationContent(ctx, "leaf", content); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Errorf("applyConfigurationContent on a leaf device: %v", err)
	}
	// A base without $edgeHub, and device and module content together, are refused.
	for _, bad := range []iothub.ConfigurationContent{
		{ModulesContent: obj(t, `{"$edgeAgent":{"properties.desired":{}}}`)},
		{ModulesContent: obj(t, `{"$edgeAgent":{"properties.desired.x":1}}`), DeviceContent: obj(t, `{"properties.desired.y":1}`)},
		{ModulesContent: obj(t, `{"$edgeAgent":{"properties.reported":{}}}`)},
	} {
		if _, _, err := h.PutConfiguration(ctx, iothub.Configuration{ID: "bad", TargetCondition: "deviceId = 'gw'", Content: bad}, ""); iothub.CodeOf(err) != iothub.InvalidConfigurationContent {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	// Without its base, the layer is only targeted.
	if err := h.DeleteConfiguration(ctx, "base", "*"); err != nil {
		t.Fatal(err)
	}
	if err := h.AwaitConfigurations(ctx); err != nil {
		t.Fatal(err)
	}
	if a, _ := h.Twin(hub.Key("gw", "$edgeAgent")); jsonOf(a.Configurations) != `{"below":{"status":"Targeted"},"layer":{"status":"Targeted"}}` {
		t.Errorf("after the base's removal: %s", jsonOf(a.Configurations))
	}
}
