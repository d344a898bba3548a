package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// ticksAtUnixEpoch is 1970-01-01 in .NET ticks (100 ns since 0001-01-01):
// generation ids are tick counts (service-api §3.1).
const ticksAtUnixEpoch = 621355968000000000

// Device returns a device identity, keys included (service-api §3.4).
func (h *Hub) Device(id string) (iothub.Device, error) {
	e, err := h.entry(id)
	if err != nil {
		return iothub.Device{}, err
	}
	return e.device(), nil
}

// Devices returns up to max identities in device-id order (max ≤ 0: all).
func (h *Hub) Devices(max int) []iothub.Device {
	all := h.deviceEntries()
	if max > 0 && len(all) > max {
		all = all[:max]
	}
	out := make([]iothub.Device, len(all))
	for i, e := range all {
		out[i] = e.device()
	}
	return out
}

// PutDevice creates or replaces a device (PUT /devices/{id}, service-api
// §3.3). Without If-Match it creates, and an existing device is a conflict;
// with If-Match it replaces an existing device whose etag matches. PUT is a
// full replacement: omitted keys are generated anew.
func (h *Hub) PutDevice(ctx context.Context, d iothub.Device, ifMatch string) (iothub.Device, error) {
	return h.putDevice(ctx, d, ifMatch, nil)
}

// putDevice is PutDevice; a created device starts with the twin patch, if
// any, in the same commit.
func (h *Hub) putDevice(ctx context.Context, d iothub.Device, ifMatch string, twin *TwinPatch) (iothub.Device, error) {
	if !iothub.ValidID(d.DeviceID) {
		return iothub.Device{}, iothub.Errorf(iothub.ArgumentInvalid, "Device ID %q is invalid: use 1-128 ASCII letters, digits or - : . + %% _ # * ? ! ( ) , = @ ; $ '", d.DeviceID)
	}
	if err := normalizeDevice(&d); err != nil {
		return iothub.Device{}, err
	}
	var e *entry
	var err error
	if ifMatch == "" {
		e, err = h.create(d, "", "", twin)
	} else {
		e, err = h.replace(d, "", ifMatch)
	}
	if err != nil {
		return iothub.Device{}, err
	}
	if d.Capabilities.IoTEdge {
		if err := h.ensureEdgeModules(ctx, d.DeviceID); err != nil {
			return iothub.Device{}, err
		}
	}
	return e.device(), nil
}

// create stores a new device, or a module of an existing device, with
// the twin patch, if any, merged in the same commit. The key is reserved
// under h.mu, but the durable write happens outside it, so creates share
// commits and readers never wait for a disk flush.
func (h *Hub) create(d iothub.Device, moduleID, managedBy string, twin *TwinPatch) (*entry, error) {
	key := Key(d.DeviceID, moduleID)
	h.mu.Lock()
	_, exists := h.devices[key]
	if exists || h.creating[key] {
		h.mu.Unlock()
		if moduleID != "" {
			return nil, iothub.Errorf(iothub.ModuleAlreadyExistsOnDevice, "A module with ID '%s' already exists on device '%s'.", moduleID, d.DeviceID)
		}
		return nil, iothub.Errorf(iothub.DeviceAlreadyExists, "A device with ID '%s' is already registered.", d.DeviceID)
	}
	if _, parent := h.devices[d.DeviceID]; moduleID != "" && !parent {
		h.mu.Unlock()
		return nil, iothub.Errorf(iothub.DeviceNotFound, "%s", d.DeviceID)
	}
	h.creating[key] = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.creating, key)
		h.mu.Unlock()
	}()
	now := h.now()
	nowT := iothub.NewTime(now)
	d.GenerationID = strconv.FormatInt(now.UnixNano()/100+ticksAtUnixEpoch, 10)
	d.ConnectionState = iothub.Disconnected
	d.ConnectionStateUpdatedTime, d.LastActivityTime = iothub.Time{}, iothub.Time{}
	d.StatusUpdatedTime = iothub.Time{}
	d.CloudToDeviceMessageCount = 0
	if moduleID == "" {
		if err := h.resolveScopes(&d); err != nil {
			return nil, err
		}
	} else {
		d.DeviceScope, d.ParentScopes = "", nil
	}
	rec := &Record{Device: d, ModuleID: moduleID, ManagedBy: managedBy, DeviceETag: 1, TwinETag: 1}
	rec.Device.ETag = deviceETag(1)
	rec.Twin = iothub.Twin{
		Version: 2,
		Properties: iothub.TwinProperties{
			Desired:  iothub.TwinCollection{Props: map[string]any{}, Version: 1, Metadata: &iothub.Metadata{LastUpdated: nowT}},
			Reported: iothub.TwinCollection{Props: map[string]any{}, Version: 1, Metadata: &iothub.Metadata{LastUpdated: nowT}},
		},
	}
	if twin != nil {
		mergePatch(rec, *twin, nowT) // nobody is connected to be told
		if err := checkTwinSizes(rec); err != nil {
			return nil, err
		}
		rec.Twin.Version++
		rec.TwinETag++
	}
	if err := h.store.Put(rec); err != nil {
		h.log.Error("store write failed", "identity", key, "error", err)
		return nil, iothub.Errorf(iothub.ServerError, "the identity could not be stored")
	}
	e := newEntry(rec)
	h.mu.Lock()
	if _, parent := h.devices[d.DeviceID]; moduleID != "" && !parent {
		// The device was deleted while its module was being stored.
		h.mu.Unlock()
		h.store.Delete(key)
		return nil, iothub.Errorf(iothub.DeviceNotFound, "%s", d.DeviceID)
	}
	h.devices[key] = e
	h.sorted = nil
	h.mu.Unlock()
	h.log.Info("identity created", "identity", key)
	return e, nil
}

// replace replaces an existing device or module whose etag matches ifMatch.
func (h *Hub) replace(d iothub.Device, moduleID, ifMatch string) (*entry, error) {
	e, err := h.entry(Key(d.DeviceID, moduleID))
	if err != nil {
		return nil, err
	}
	var mods []*entry
	if moduleID == "" {
		// Before the entry's lock: the parents' entries are looked up,
		// and the device's modules, which a disable disconnects.
		d.GenerationID = e.rec.Load().Device.GenerationID
		if err := h.resolveScopes(&d); err != nil {
			return nil, err
		}
		mods = h.modulesOf(d.DeviceID)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.rec.Load()
	if err := matchETag(ifMatch, cur.Device.ETag); err != nil {
		return nil, err
	}
	next := e.clone()
	old := next.Device
	next.Device = d
	next.Device.GenerationID = old.GenerationID
	next.Device.CloudToDeviceMessageCount = old.CloudToDeviceMessageCount
	next.Device.StatusUpdatedTime = old.StatusUpdatedTime
	if d.Status != old.Status {
		next.Device.StatusUpdatedTime = iothub.NewTime(h.now())
	}
	next.DeviceETag++
	next.Device.ETag = deviceETag(next.DeviceETag)
	if err := h.commitLocked(e, next); err != nil {
		return nil, err
	}
	keysChanged := old.Authentication.SymmetricKey != d.Authentication.SymmetricKey
	if d.Status == iothub.StatusDisabled || keysChanged {
		// A disabled identity, or one whose keys changed, is disconnected
		// (device-protocol §4.3).
		h.disconnect(e, "the identity was disabled or its keys changed")
	}
	if d.Status == iothub.StatusDisabled {
		// A module attaching meanwhile sees the device disabled (Attach).
		for _, m := range mods {
			h.disconnect(m, "the module's device was disabled")
		}
	}
	return e, nil
}

// normalizeDevice applies the create/replace defaults: status enabled,
// authentication type sas and generated keys where they are empty
// (service-api §3.3).
func normalizeDevice(d *iothub.Device) error {
	if d.Status == "" {
		d.Status = iothub.StatusEnabled
	}
	if d.Status != iothub.StatusEnabled && d.Status != iothub.StatusDisabled {
		return iothub.Errorf(iothub.ArgumentInvalid, "status must be enabled or disabled, not %q", d.Status)
	}
	if d.StatusReason != nil && len(*d.StatusReason) > 128 {
		return iothub.Errorf(iothub.ArgumentInvalid, "statusReason is longer than 128 characters")
	}
	a := &d.Authentication
	hasThumb := a.X509Thumbprint.PrimaryThumbprint != nil && *a.X509Thumbprint.PrimaryThumbprint != ""
	if a.Type == "" {
		a.Type = iothub.AuthSAS
		if hasThumb {
			a.Type = iothub.AuthSelfSigned
		}
	}
	switch a.Type {
	case iothub.AuthSAS:
		if hasThumb {
			return iothub.Errorf(iothub.ArgumentInvalid, "a sas device cannot have X.509 thumbprints")
		}
		for _, k := range []*string{&a.SymmetricKey.PrimaryKey, &a.SymmetricKey.SecondaryKey} {
			if *k == "" {
				*k = newKey()
				continue
			}
			if b, err := base64.StdEncoding.DecodeString(*k); err != nil || len(b) < 16 || len(b) > 64 {
				return iothub.Errorf(iothub.ArgumentInvalid, "symmetric keys must be base64 of 16 to 64 bytes")
			}
		}
	case iothub.AuthSelfSigned, iothub.AuthCertificateAuthority, iothub.AuthNone:
		if a.SymmetricKey.PrimaryKey != "" || a.SymmetricKey.SecondaryKey != "" {
			return iothub.Errorf(iothub.ArgumentInvalid, "a %s device cannot have symmetric keys", a.Type)
		}
		if a.Type == iothub.AuthSelfSigned && !hasThumb {
			return iothub.Errorf(iothub.ArgumentInvalid, "a selfSigned device needs a primary thumbprint")
		}
	default:
		return iothub.Errorf(iothub.ArgumentInvalid, "unknown authentication type %q", a.Type)
	}
	return nil
}

// DeleteDevice deletes a device with its twin, session and modules
// (service-api §3.5), and closes their connections.
func (h *Hub) DeleteDevice(ctx context.Context, id, ifMatch string) error {
	if strings.Contains(id, "/") {
		return iothub.Errorf(iothub.DeviceNotFound, "%s", id)
	}
	return h.delete(id, ifMatch)
}

// modulesOf returns the entries of a device's modules, sorted by key.
func (h *Hub) modulesOf(deviceID string) []*entry {
	var out []*entry
	for _, m := range h.moduleEntries() {
		if m.rec.Load().Device.DeviceID == deviceID {
			out = append(out, m)
		}
	}
	return out
}

// DeleteModule deletes a module with its twin and session.
func (h *Hub) DeleteModule(ctx context.Context, deviceID, moduleID, ifMatch string) error {
	return h.delete(Key(deviceID, moduleID), ifMatch)
}

// delete deletes an identity, and a device's modules with it, in one
// store commit: a crash leaves all of them or none. It holds the
// device's entry.mu, then each module's, in key order, across the commit
// and while it marks them gone, so no writer commits to one of them
// after it; the map forgets them once those locks are released (Hub.mu
// is never taken under an entry lock).
func (h *Hub) delete(id, ifMatch string) error {
	e, err := h.entry(id)
	if err != nil {
		return err
	}
	var mods []*entry
	if !strings.Contains(id, "/") {
		mods = h.modulesOf(id)
	}
	gone, err := h.deleteLocked(e, mods, ifMatch)
	if err != nil {
		return err
	}
	h.mu.Lock()
	for _, g := range gone {
		if h.devices[g.id] == g {
			delete(h.devices, g.id)
			h.sorted = nil
		}
	}
	h.mu.Unlock()
	for _, g := range gone {
		h.disconnect(g, "the identity was deleted")
		h.log.Info("identity deleted", "identity", g.id)
	}
	return nil
}

// deleteLocked commits the deletion of e and mods under their writer
// locks and marks them gone; it returns those it deleted.
func (h *Hub) deleteLocked(e *entry, mods []*entry, ifMatch string) ([]*entry, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone.Load() {
		return nil, notFound(e.id)
	}
	if ifMatch != "" {
		if err := matchETag(ifMatch, e.rec.Load().Device.ETag); err != nil {
			return nil, err
		}
	}
	gone := []*entry{e}
	for _, m := range mods {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.gone.Load() {
			gone = append(gone, m)
		}
	}
	keys := make([]string, len(gone))
	for i, g := range gone {
		keys[i] = g.id
	}
	if err := h.store.Delete(keys...); err != nil {
		h.log.Error("store delete failed", "identity", e.id, "error", err)
		return nil, iothub.Errorf(iothub.ServerError, "the identity could not be deleted")
	}
	for _, g := range gone {
		g.connMu.Lock()
		g.gone.Store(true)
		g.connMu.Unlock()
	}
	return gone, nil
}

// RegistryStatistics counts devices by status (service-api §3.9).
func (h *Hub) RegistryStatistics() iothub.RegistryStatistics {
	var s iothub.RegistryStatistics
	for _, e := range h.deviceEntries() {
		s.TotalDeviceCount++
		if e.rec.Load().Device.Status == iothub.StatusEnabled {
			s.EnabledDeviceCount++
		} else {
			s.DisabledDeviceCount++
		}
	}
	return s
}

// ServiceStatistics counts connected devices (service-api §3.9).
func (h *Hub) ServiceStatistics() iothub.ServiceStatistics {
	var s iothub.ServiceStatistics
	for _, e := range h.deviceEntries() {
		if e.live.connected.Load() {
			s.ConnectedDeviceCount++
		}
	}
	return s
}

// deviceETag renders an identity etag counter as the hub does: base64 of
// the decimal number ("MQ==" is 1) (service-api §3.1).
func deviceETag(n int64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(n, 10)))
}

func newKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}
