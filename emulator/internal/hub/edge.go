package hub

import (
	"context"
	"slices"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// IoT Edge on the registry side (service-api §3.1): an edge device gets a
// scope of its own; a child names its parent's scope, and a parent must
// be an edge device of this hub.

// resolveScopes sets the deviceScope and parentScopes of device d, whose
// GenerationID is set, as Azure does: an edge device's deviceScope is its
// own; a leaf device's is its parent's; parentScopes holds the parent's
// scope, given as either field for a leaf device, as parentScopes for an
// edge device. The parent must be an existing edge device, not d itself
// or one of its descendants, and a hierarchy has at most MaxEdgeDepth
// layers of edge devices. It takes no lock but Hub.mu's read side.
func (h *Hub) resolveScopes(d *iothub.Device) error {
	edge := d.Capabilities.IoTEdge
	own := ""
	if edge {
		own = iothub.EdgeScope(d.DeviceID, d.GenerationID)
		if d.DeviceScope != "" && d.DeviceScope != own {
			return iothub.Errorf(iothub.ArgumentInvalid, "the deviceScope of an IoT Edge device is its own, %s", own)
		}
	}
	if len(d.ParentScopes) > 1 {
		return iothub.Errorf(iothub.ArgumentInvalid, "a device can have only one parent, not %d parentScopes", len(d.ParentScopes))
	}
	parent := ""
	if len(d.ParentScopes) == 1 {
		parent = d.ParentScopes[0]
	}
	if !edge && d.DeviceScope != "" {
		if parent != "" && parent != d.DeviceScope {
			return iothub.Errorf(iothub.ArgumentInvalid, "the deviceScope %s and parentScopes %s of a leaf device must name the same parent", d.DeviceScope, parent)
		}
		parent = d.DeviceScope
	}
	d.DeviceScope, d.ParentScopes = own, nil
	if parent == "" {
		return nil
	}
	layers, err := h.ancestry(parent, d.DeviceID)
	if err != nil {
		return err
	}
	if edge && layers+1 > iothub.MaxEdgeDepth {
		return iothub.Errorf(iothub.ArgumentInvalid, "a hierarchy of IoT Edge devices has at most %d layers", iothub.MaxEdgeDepth)
	}
	if !edge {
		d.DeviceScope = parent
	}
	d.ParentScopes = []string{parent}
	return nil
}

// ancestry checks that scope is an edge device's current scope and that
// self is not among it and its ancestors, and returns how many layers of
// edge devices that line holds.
func (h *Hub) ancestry(scope, self string) (int, error) {
	layers := 0
	for seen := []string{}; scope != ""; layers++ {
		id, _, ok := iothub.ParseEdgeScope(scope)
		if !ok {
			return 0, iothub.Errorf(iothub.ArgumentInvalid, "%q is not an IoT Edge device scope", scope)
		}
		if id == self || slices.Contains(seen, id) {
			return 0, iothub.Errorf(iothub.ArgumentInvalid, "device %s cannot be its own ancestor", self)
		}
		seen = append(seen, id)
		e, err := h.entry(id)
		if err != nil {
			return 0, iothub.Errorf(iothub.ArgumentInvalid, "the parent scope %s names no device of this hub", scope)
		}
		p := e.rec.Load().Device
		if !p.Capabilities.IoTEdge || p.DeviceScope != scope {
			return 0, iothub.Errorf(iothub.ArgumentInvalid, "the parent scope %s is not the scope of an IoT Edge device", scope)
		}
		scope = ""
		if len(p.ParentScopes) == 1 {
			scope = p.ParentScopes[0]
		}
	}
	return layers, nil
}

// Edge runtime modules, which the hub creates with every IoT Edge device.
const (
	EdgeAgent     = "$edgeAgent"
	EdgeHub       = "$edgeHub"
	EdgeManagedBy = "IotEdge"
)

// ensureEdgeModules creates the $edgeAgent and $edgeHub modules of an
// IoT Edge device that lacks them.
func (h *Hub) ensureEdgeModules(ctx context.Context, deviceID string) error {
	for _, m := range []string{EdgeAgent, EdgeHub} {
		if _, err := h.entry(Key(deviceID, m)); err == nil {
			continue
		}
		d := iothub.Device{DeviceID: deviceID}
		if err := normalizeDevice(&d); err != nil {
			return err
		}
		if _, err := h.create(d, m, EdgeManagedBy, nil); err != nil && iothub.CodeOf(err) != iothub.ModuleAlreadyExistsOnDevice {
			return err
		}
	}
	return nil
}
