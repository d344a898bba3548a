package iothub

import (
	"fmt"
	"maps"
	"sort"
)

// An IoT Edge deployment is a configuration whose content is
// modulesContent: for each module ($edgeAgent, $edgeHub and the user's),
// twin paths under properties.desired and their values. A deployment is
// layered when a module sets a path below properties.desired; a base
// deployment sets whole desired sections, $edgeAgent's and $edgeHub's
// among them. On a device, the base deployment of highest priority is
// applied, then every layered one of higher priority, lowest first, each
// replacing what a whole section sets and merging what a path sets
// (Azure CLI, az iot edge deployment create).

// Deployment is parsed modulesContent.
type Deployment struct {
	Layered bool
	Modules map[string]ModuleContent
}

// ModuleContent is what a deployment sets in one module's desired
// properties: the whole section (when Whole), then values at paths.
type ModuleContent struct {
	Whole   bool
	Desired map[string]any
	Paths   []PathValue
}

// PathValue is one value at a path below properties.desired.
type PathValue struct {
	Path  []string
	Value any
}

// The edge runtime's modules, which every base deployment configures.
const (
	EdgeAgentModule = "$edgeAgent"
	EdgeHubModule   = "$edgeHub"
)

// ParseModulesContent reads modulesContent. Every key must be a desired
// path; a base deployment must set $edgeAgent's and $edgeHub's whole
// desired sections.
func ParseModulesContent(content map[string]any) (Deployment, error) {
	d := Deployment{Modules: map[string]ModuleContent{}}
	for module, v := range content {
		if !ValidID(module) {
			return Deployment{}, fmt.Errorf("modulesContent names an invalid module id %q", module)
		}
		entries, ok := v.(map[string]any)
		if !ok {
			return Deployment{}, fmt.Errorf("the content of module %q must be an object of twin paths", module)
		}
		keys := make([]string, 0, len(entries))
		for k := range entries {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var mc ModuleContent
		for _, k := range keys {
			path, err := DesiredPath(k)
			if err != nil {
				return Deployment{}, fmt.Errorf("module %q: %w", module, err)
			}
			if len(path) == 0 {
				obj, ok := entries[k].(map[string]any)
				if !ok {
					return Deployment{}, fmt.Errorf("module %q: properties.desired must be an object", module)
				}
				mc.Whole, mc.Desired = true, obj
				continue
			}
			d.Layered = true
			mc.Paths = append(mc.Paths, PathValue{Path: path, Value: entries[k]})
		}
		d.Modules[module] = mc
	}
	if !d.Layered {
		for _, m := range []string{EdgeAgentModule, EdgeHubModule} {
			if !d.Modules[m].Whole {
				return Deployment{}, fmt.Errorf("a deployment must set the properties.desired of %s (or be layered, with properties.desired.* paths)", m)
			}
		}
	}
	return d, nil
}

// Apply returns a module's desired properties after this content, on top
// of base (which it does not change).
func (m ModuleContent) Apply(base map[string]any) map[string]any {
	out := map[string]any{}
	if m.Whole {
		maps.Copy(out, deepCopy(m.Desired).(map[string]any))
	} else if base != nil {
		out = deepCopy(base).(map[string]any)
	}
	for _, pv := range m.Paths {
		cur := out
		for _, seg := range pv.Path[:len(pv.Path)-1] {
			next, ok := cur[seg].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[seg] = next
			}
			cur = next
		}
		last := pv.Path[len(pv.Path)-1]
		if pv.Value == nil {
			delete(cur, last)
		} else {
			cur[last] = deepCopy(pv.Value)
		}
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// Edge deployment system metric names, beside targetedCount and
// appliedCount.
const (
	MetricReportedSuccessful = "reportedSuccessfulCount"
	MetricReportedFailed     = "reportedFailedCount"
)
