package iothub

import (
	"fmt"
	"strings"
)

// The IoT Plug and Play digital twin is a view of a device twin
// (concepts-digital-twin): reported values at the top, writable-property
// state in $metadata, components marked "__t": "c" in the device twin and
// by their own $metadata in the digital twin.

// ComponentMarker is the member that marks a component in a device twin.
const ComponentMarker = "__t"

// isComponent reports whether a twin value is a component.
func isComponent(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m[ComponentMarker] == "c"
}

// Components names the members of either section marked as components.
func Components(p TwinProperties) map[string]bool {
	out := map[string]bool{}
	for _, props := range []map[string]any{p.Reported.Props, p.Desired.Props} {
		for k, v := range props {
			if isComponent(v) {
				out[k] = true
			}
		}
	}
	return out
}

// DigitalTwin renders t as a digital twin: $dtId, $metadata.$model, each
// reported value (a writable property's acknowledged "value"), and per
// property its last update and its desired value, version and
// acknowledgement.
func DigitalTwin(t Twin) map[string]any {
	rep, des := t.Properties.Reported, t.Properties.Desired
	dt := map[string]any{"$dtId": t.DeviceID}
	meta := map[string]any{}
	if t.ModelID != "" {
		meta["$model"] = t.ModelID
	}
	components := Components(t.Properties)
	fillDigitalTwin(dt, meta, rep.Props, rep.Metadata, des.Props, des.Metadata, components)
	for c := range components {
		obj, cmeta := map[string]any{}, map[string]any{}
		r, _ := rep.Props[c].(map[string]any)
		d, _ := des.Props[c].(map[string]any)
		fillDigitalTwin(obj, cmeta, r, child(rep.Metadata, c), d, child(des.Metadata, c), nil)
		obj["$metadata"] = cmeta
		dt[c] = obj
	}
	dt["$metadata"] = meta
	return dt
}

func child(m *Metadata, k string) *Metadata {
	if m == nil {
		return nil
	}
	return m.Children[k]
}

func fillDigitalTwin(out, meta, rep map[string]any, repMeta *Metadata, des map[string]any, desMeta *Metadata, skip map[string]bool) {
	for k, v := range rep {
		if k == ComponentMarker || skip[k] {
			continue
		}
		pm := map[string]any{}
		if ack, ok := v.(map[string]any); ok && ack["ac"] != nil {
			if val, ok := ack["value"]; ok {
				v = val
			}
			pm["ackCode"] = ack["ac"]
			if av, ok := ack["av"]; ok {
				pm["ackVersion"] = av
			}
			if ad, ok := ack["ad"]; ok {
				pm["ackDescription"] = ad
			}
		}
		out[k] = v
		if c := child(repMeta, k); c != nil {
			pm["lastUpdateTime"] = c.LastUpdated.String()
		}
		meta[k] = pm
	}
	for k, v := range des {
		if k == ComponentMarker || skip[k] {
			continue
		}
		pm, _ := meta[k].(map[string]any)
		if pm == nil {
			pm = map[string]any{}
			meta[k] = pm
		}
		pm["desiredValue"] = v
		if c := child(desMeta, k); c != nil {
			pm["desiredVersion"] = c.LastUpdatedVersion
		}
	}
}

// JSONPatchOp is one operation of a digital twin update (RFC 6902).
type JSONPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// DigitalTwinDesired turns a digital twin update into one desired
// properties merge patch (howto-manage-digital-twin): add and replace set
// a property's desired value, remove clears it; a component, whose value
// carries an empty $metadata, is set whole (clearing the desired values
// it does not name) or removed whole. components names the components the
// twin already has, and desired its current desired properties.
func DigitalTwinDesired(ops []JSONPatchOp, desired map[string]any, components map[string]bool) (map[string]any, error) {
	patch := map[string]any{}
	for _, op := range ops {
		if op.Op != "add" && op.Op != "replace" && op.Op != "remove" {
			return nil, Errorf(InvalidDigitalTwinJSONPatch, "op %q is not supported; use add, replace or remove", op.Op)
		}
		segs := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		if !strings.HasPrefix(op.Path, "/") || len(segs) > 2 {
			return nil, Errorf(InvalidDigitalTwinPatchPath, "path %q must be /property or /component/property", op.Path)
		}
		for _, s := range segs {
			if !ValidDTDLName(s) {
				return nil, Errorf(InvalidDigitalTwinPatchPath, "%q in path %q is not a DTDL name", s, op.Path)
			}
		}
		if op.Op != "remove" {
			if err := checkDTDLValue(op.Value, 1); err != nil {
				return nil, Errorf(InvalidDigitalTwinPatch, "the value of %s: %v", op.Path, err)
			}
		}
		name := segs[0]
		comp, isComp := op.Value.(map[string]any)
		switch {
		case len(segs) == 2:
			if !components[name] && !isComponent(patch[name]) {
				return nil, Errorf(InvalidDigitalTwinPatchPath, "%q is not a component of this digital twin", name)
			}
			c, _ := patch[name].(map[string]any)
			if c == nil {
				c = map[string]any{ComponentMarker: "c"}
				patch[name] = c
			}
			if op.Op == "remove" {
				c[segs[1]] = nil
			} else {
				c[segs[1]] = op.Value
			}
		case op.Op == "remove":
			patch[name] = nil
		case isComp && comp["$metadata"] != nil:
			c := map[string]any{ComponentMarker: "c"}
			if cur, ok := desired[name].(map[string]any); ok {
				for k := range cur {
					if k != ComponentMarker {
						c[k] = nil
					}
				}
			}
			for k, v := range comp {
				if k != "$metadata" {
					c[k] = v
				}
			}
			patch[name] = c
		default:
			patch[name] = op.Value
		}
	}
	return patch, nil
}

// ValidDTDLName reports whether s is a DTDL name: 1–64 letters, digits and
// underscores, starting with a letter and not ending with an underscore.
func ValidDTDLName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[len(s)-1] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '_')) {
			return false
		}
	}
	return true
}

// checkDTDLValue refuses what a digital twin property cannot hold: arrays,
// objects deeper than five levels and field names that are not DTDL names.
func checkDTDLValue(v any, depth int) error {
	switch x := v.(type) {
	case []any:
		return fmt.Errorf("arrays are not supported")
	case map[string]any:
		if depth > 5 {
			return fmt.Errorf("objects nest at most five levels")
		}
		for k, c := range x {
			if k == "$metadata" && depth == 1 {
				continue
			}
			if !ValidDTDLName(k) {
				return fmt.Errorf("%q is not a DTDL name", k)
			}
			if err := checkDTDLValue(c, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
