package hub

import (
	"context"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// PutModule creates a module on an existing device or, with If-Match,
// replaces one; created says which (service-api §3.8). Keys left empty are
// generated; ids starting with '$' are reserved for IoT Edge system
// modules.
func (h *Hub) PutModule(ctx context.Context, m iothub.Module, ifMatch string) (mod iothub.Module, created bool, err error) {
	return h.putModule(ctx, m, ifMatch, nil)
}

// putModule is PutModule; a created module starts with the twin patch, if
// any, in the same commit.
func (h *Hub) putModule(ctx context.Context, m iothub.Module, ifMatch string, twin *TwinPatch) (mod iothub.Module, created bool, err error) {
	if !iothub.ValidID(m.ModuleID) {
		return iothub.Module{}, false, iothub.Errorf(iothub.ArgumentInvalid, "Module ID %q is invalid", m.ModuleID)
	}
	if strings.HasPrefix(m.ModuleID, "$") {
		return iothub.Module{}, false, iothub.Errorf(iothub.ArgumentInvalid, "BadRequest: module ids starting with '$' are reserved")
	}
	d := iothub.Device{DeviceID: m.DeviceID, Authentication: m.Authentication}
	if err := normalizeDevice(&d); err != nil {
		return iothub.Module{}, false, err
	}
	var e *entry
	if ifMatch == "" {
		e, err = h.create(d, m.ModuleID, m.ManagedBy, twin)
	} else {
		e, err = h.replace(d, m.ModuleID, ifMatch)
	}
	if err != nil {
		return iothub.Module{}, false, err
	}
	return e.module(), ifMatch == "", nil
}

// Module returns a module identity, keys included.
func (h *Hub) Module(deviceID, moduleID string) (iothub.Module, error) {
	e, err := h.entry(Key(deviceID, moduleID))
	if err != nil {
		return iothub.Module{}, err
	}
	return e.module(), nil
}

// Modules lists a device's modules by module id.
func (h *Hub) Modules(deviceID string) ([]iothub.Module, error) {
	if _, err := h.entry(deviceID); err != nil {
		return nil, err
	}
	out := []iothub.Module{}
	for _, e := range h.moduleEntries() {
		if e.rec.Load().Device.DeviceID == deviceID {
			out = append(out, e.module())
		}
	}
	return out, nil
}

// module renders a module's identity with its live state.
func (e *entry) module() iothub.Module {
	rec := e.rec.Load()
	d := e.device()
	return iothub.Module{
		ModuleID: rec.ModuleID, ManagedBy: rec.ManagedBy, DeviceID: d.DeviceID, GenerationID: d.GenerationID,
		ETag: d.ETag, ConnectionState: d.ConnectionState, ConnectionStateUpdatedTime: d.ConnectionStateUpdatedTime,
		LastActivityTime: d.LastActivityTime, CloudToDeviceMessageCount: d.CloudToDeviceMessageCount,
		Authentication: d.Authentication,
	}
}
