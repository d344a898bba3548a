package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"sort"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/query"
)

// IoT Edge deployments (configurations with modulesContent) target edge
// devices by their device twins and set the desired properties of their
// modules' twins: the base deployment of highest priority, then the
// layered ones above it (iothub.Deployment). Where they stand on a
// device is kept in the configurations member of its $edgeAgent twin, as
// Azure's metric queries read it.

// compiledDeployment is a deployment ready to evaluate.
type compiledDeployment struct {
	c    *iothub.Configuration
	cond query.Expr
	d    iothub.Deployment
}

// applyDeployments brings every edge device's module twins to the
// deployments that target it; deps are in priority order, highest first.
// Only the configuration worker calls it.
func (h *Hub) applyDeployments(deps []compiledDeployment) {
	for _, d := range twinDocs(h.deviceEntries()) {
		doc := d.(*twinDoc)
		if !doc.rec.Device.Capabilities.IoTEdge {
			continue
		}
		var matching []compiledDeployment
		for _, dep := range deps {
			if query.Matches(dep.cond, d) {
				matching = append(matching, dep)
			}
		}
		h.deployTo(doc.rec.Device.DeviceID, matching)
	}
}

// deployTo applies the deployments that target one edge device.
func (h *Hub) deployTo(deviceID string, matching []compiledDeployment) {
	want := map[string]iothub.ConfigurationStatus{}
	var base *compiledDeployment
	for i := range matching {
		want[matching[i].c.ID] = iothub.ConfigurationStatus{Status: iothub.ConfigurationTargeted}
		if base == nil && !matching[i].d.Layered {
			base = &matching[i]
		}
	}
	desired := map[string]map[string]any{}
	if base != nil {
		want[base.c.ID] = iothub.ConfigurationStatus{Status: iothub.ConfigurationApplied}
		for m, mc := range base.d.Modules {
			desired[m] = mc.Apply(nil)
		}
		// The layered deployments above the base, lowest priority first.
		for i := len(matching) - 1; i >= 0; i-- {
			l := matching[i]
			if !l.d.Layered || l.c.Priority <= base.c.Priority {
				continue
			}
			want[l.c.ID] = iothub.ConfigurationStatus{Status: iothub.ConfigurationApplied}
			for m, mc := range l.d.Modules {
				desired[m] = mc.Apply(desired[m])
			}
		}
	}
	if len(want) == 0 {
		want = nil
	}
	modules := []string{iothub.EdgeAgentModule}
	for m := range desired {
		if m != iothub.EdgeAgentModule {
			modules = append(modules, m)
		}
	}
	for _, m := range modules {
		e, err := h.entry(Key(deviceID, m))
		if err != nil {
			continue // a module the edge agent has not created yet
		}
		statuses, setStatuses := want, m == iothub.EdgeAgentModule
		h.setModuleDesired(e, desired[m], statuses, setStatuses)
	}
}

// setModuleDesired replaces a module twin's desired properties with
// desired, if set and different, under a new $version, and its
// configuration statuses with want if setStatuses; the module is told
// the whole new section.
func (h *Hub) setModuleDesired(e *entry, desired map[string]any, want map[string]iothub.ConfigurationStatus, setStatuses bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.rec.Load()
	change := desired != nil && !sameJSON(cur.Twin.Properties.Desired.Props, desired)
	if !change && (!setStatuses || maps.Equal(cur.Twin.Configurations, want)) {
		return
	}
	next := e.clone()
	next.TwinETag++
	if setStatuses {
		next.Twin.Configurations = want
	}
	var notify []byte
	if change {
		now := iothub.NewTime(h.now())
		des := &next.Twin.Properties.Desired
		des.Version++
		des.Props = map[string]any{}
		des.Metadata = &iothub.Metadata{LastUpdated: now, LastUpdatedVersion: des.Version}
		mergeSection(des, desired, now, des.Version)
		if err := iothub.CheckSectionSize("desired", des.Props); err != nil {
			h.log.Warn("deployment not applied", "module", e.id, "error", err)
			return
		}
		next.Twin.Version++
		notify, _ = json.Marshal(iothub.TwinCollection{Props: des.Props, Version: des.Version})
	}
	if err := h.commitLocked(e, next); err != nil {
		return
	}
	if notify != nil {
		h.log.Info("deployment applied", "module", e.id)
		h.sendDesired(e, next.Twin.Properties.Desired.Version, notify)
	}
}

func sameJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// ApplyConfigurationContent applies modulesContent to one IoT Edge
// device's module twins at once (POST /devices/{id}/applyConfigurationContent,
// az iot edge set-modules): whole sections replace the module's desired
// properties, paths merge into them. Modules the device lacks are
// skipped, as the edge agent creates them; a deployment that targets the
// device replaces this content at its next evaluation.
func (h *Hub) ApplyConfigurationContent(ctx context.Context, deviceID string, content iothub.ConfigurationContent) error {
	e, err := h.entry(deviceID)
	if err != nil {
		return err
	}
	if !e.rec.Load().Device.Capabilities.IoTEdge {
		return iothub.Errorf(iothub.ArgumentInvalid, "device %s is not an IoT Edge device: configuration content applies to edge devices", deviceID)
	}
	if len(content.DeviceContent) > 0 || len(content.ModuleContent) > 0 || len(content.ModulesContent) == 0 {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "the content to apply to an edge device is modulesContent")
	}
	dep, err := iothub.ParseModulesContent(content.ModulesContent)
	if err != nil {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "%v", err)
	}
	names := make([]string, 0, len(dep.Modules))
	for m := range dep.Modules {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		me, err := h.entry(Key(deviceID, m))
		if err != nil {
			continue
		}
		desired := dep.Modules[m].Apply(me.rec.Load().Twin.Properties.Desired.Props)
		h.setModuleDesired(me, desired, nil, false)
	}
	return nil
}

// deploymentMetrics counts an edge deployment's system metrics as Azure
// defines them: edge devices targeted, $edgeAgent twins it is applied
// to, and of those the ones whose agent reported the current desired
// version with status 200 (or another).
func (h *Hub) deploymentMetrics(c iothub.Configuration) iothub.ConfigurationMetrics {
	var targeted, applied, ok, failed int64
	cond, err := query.ParseCondition(c.TargetCondition)
	for _, d := range twinDocs(h.deviceEntries()) {
		if d.(*twinDoc).rec.Device.Capabilities.IoTEdge && c.TargetCondition != "" && err == nil && query.Matches(cond, d) {
			targeted++
		}
	}
	for _, e := range h.moduleEntries() {
		rec := e.rec.Load()
		if rec.ModuleID != iothub.EdgeAgentModule || rec.Twin.Configurations[c.ID].Status != iothub.ConfigurationApplied {
			continue
		}
		applied++
		rep := rec.Twin.Properties.Reported.Props
		if v, _ := json.Marshal(rep["lastDesiredVersion"]); string(v) != jsonInt(rec.Twin.Properties.Desired.Version) {
			continue
		}
		status, _ := rep["lastDesiredStatus"].(map[string]any)
		if code, _ := json.Marshal(status["code"]); string(code) == "200" {
			ok++
		} else {
			failed++
		}
	}
	applies := "select deviceId from devices.modules where moduleId = '$edgeAgent' and configurations.[[" + c.ID + "]].status = 'Applied'"
	reported := applies + " and properties.desired.$version = properties.reported.lastDesiredVersion"
	return iothub.ConfigurationMetrics{
		Results: map[string]int64{iothub.MetricTargeted: targeted, iothub.MetricApplied: applied,
			iothub.MetricReportedSuccessful: ok, iothub.MetricReportedFailed: failed},
		Queries: map[string]string{
			iothub.MetricTargeted:           "select deviceId from devices where capabilities.iotEdge = true and " + c.TargetCondition,
			iothub.MetricApplied:            applies,
			iothub.MetricReportedSuccessful: reported + " and properties.reported.lastDesiredStatus.code = 200",
			iothub.MetricReportedFailed:     reported + " and properties.reported.lastDesiredStatus.code != 200",
		},
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
