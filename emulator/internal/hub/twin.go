package hub

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Twin returns the service view of a device's or module's twin, named by
// Key (service-api §4.1).
func (h *Hub) Twin(key string) (iothub.Twin, error) {
	e, err := h.entry(key)
	if err != nil {
		return iothub.Twin{}, err
	}
	return e.twin(), nil
}

// twin renders the full twin of e from its snapshot and live state.
func (e *entry) twin() iothub.Twin {
	rec := e.rec.Load()
	d := e.device()
	t := rec.Twin
	t.DeviceID, t.ModuleID = d.DeviceID, rec.ModuleID
	t.ETag = twinETag(rec.TwinETag)
	t.DeviceETag = d.ETag
	t.Status = d.Status
	t.StatusReason = d.StatusReason
	t.StatusUpdateTime = d.StatusUpdatedTime
	t.ConnectionState = d.ConnectionState
	t.LastActivityTime = d.LastActivityTime
	t.CloudToDeviceMessageCount = d.CloudToDeviceMessageCount
	t.AuthenticationType = d.Authentication.Type
	t.X509Thumbprint = d.Authentication.X509Thumbprint
	caps := d.Capabilities
	t.Capabilities = &caps
	t.DeviceScope, t.ParentScopes = d.DeviceScope, d.ParentScopes
	if t.Tags == nil {
		t.Tags = map[string]any{}
	}
	return t
}

// twinETag renders the twin etag counter as the hub does: base64 of a
// big-endian int64 ("AAAAAAAAAAE=" is 1) (service-api §4.2).
func twinETag(n int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return base64.StdEncoding.EncodeToString(b[:])
}

// DeviceTwin returns what a device receives for a twin GET: desired and
// reported with their $version and no $metadata (device-protocol §11.1).
func (h *Hub) DeviceTwin(deviceID string) (iothub.TwinProperties, error) {
	if err := h.Admit(context.Background(), iothub.OpTwinRead, deviceID, 0); err != nil {
		return iothub.TwinProperties{}, err
	}
	e, err := h.entry(deviceID)
	if err != nil {
		return iothub.TwinProperties{}, err
	}
	p := e.rec.Load().Twin.Properties
	p.Desired.Metadata, p.Reported.Metadata = nil, nil
	return p, nil
}

// UpdateReported merges a device's reported-properties patch and returns the
// new reported $version once the change is durable (device-protocol §11.1,
// §11.3). A rejected patch changes nothing.
func (h *Hub) UpdateReported(ctx context.Context, deviceID string, patch map[string]any) (int64, error) {
	if err := iothub.ValidatePatch(patch); err != nil {
		return 0, err
	}
	if err := h.Admit(ctx, iothub.OpTwinUpdate, deviceID, 0); err != nil {
		return 0, err
	}
	e, err := h.entry(deviceID)
	if err != nil {
		return 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.clone()
	rep := &next.Twin.Properties.Reported
	rep.Version++
	mergeSection(rep, patch, iothub.NewTime(h.now()), 0)
	if err := iothub.CheckSectionSize("reported", rep.Props); err != nil {
		return 0, err
	}
	next.Twin.Version++
	if err := h.commitLocked(e, next); err != nil {
		return 0, err
	}
	return rep.Version, nil
}

// TwinPatch is the part of a service twin update the hub applies: tags and
// desired properties (service-api §4.4). A nil map is absent.
type TwinPatch struct {
	Tags    map[string]any
	Desired map[string]any
	// ClearDesired removes every desired property, as "desired": null
	// does on Azure; Desired is then ignored.
	ClearDesired bool
}

// PatchOf is the hub's patch for a service's twin patch body.
func PatchOf(b iothub.TwinPatch) TwinPatch {
	return TwinPatch{Tags: b.Tags, Desired: b.DesiredProps(), ClearDesired: b.ClearsDesired()}
}

// UpdateTwin merges patch into a twin (PATCH /twins/{id}) or, with replace,
// replaces its tags and desired properties (PUT /twins/{id}). ifMatch is
// the If-Match header, empty when absent. The desired change is sent to the
// device if it is connected and subscribed.
func (h *Hub) UpdateTwin(ctx context.Context, deviceID string, patch TwinPatch, ifMatch string, replace bool) (iothub.Twin, error) {
	for _, m := range []map[string]any{patch.Tags, patch.Desired} {
		if err := iothub.ValidatePatch(m); err != nil {
			return iothub.Twin{}, err
		}
	}
	e, err := h.entry(deviceID)
	if err != nil {
		return iothub.Twin{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.rec.Load()
	if err := checkTwinETag(ifMatch, twinETag(cur.TwinETag)); err != nil {
		return iothub.Twin{}, err
	}
	next := e.clone()
	now := iothub.NewTime(h.now())
	var notify []byte
	if replace {
		next.Twin.Tags = orEmpty(patch.Tags)
		des := &next.Twin.Properties.Desired
		des.Version++
		des.Props = map[string]any{}
		des.Metadata = &iothub.Metadata{LastUpdated: now, LastUpdatedVersion: des.Version}
		mergeSection(des, orEmpty(patch.Desired), now, des.Version)
		notify, _ = json.Marshal(iothub.TwinCollection{Props: des.Props, Version: des.Version})
	} else {
		notify = mergePatch(next, patch, now)
	}
	if err := checkTwinSizes(next); err != nil {
		return iothub.Twin{}, err
	}
	next.Twin.Version++
	next.TwinETag++
	if err := h.commitLocked(e, next); err != nil {
		return iothub.Twin{}, err
	}
	if notify != nil {
		h.sendDesired(e, next.Twin.Properties.Desired.Version, notify)
	}
	return e.twin(), nil
}

// mergeDesired merges patch into next's desired properties under a new
// $version and returns the notification the device gets for it.
func mergeDesired(next *Record, patch map[string]any, now iothub.Time) []byte {
	des := &next.Twin.Properties.Desired
	des.Version++
	mergeSection(des, patch, now, des.Version)
	b, _ := json.Marshal(iothub.TwinCollection{Props: patch, Version: des.Version})
	return b
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// mergeSection merges patch into a twin section and its metadata; version
// is the desired $version recorded in metadata, or 0 for reported.
func mergeSection(c *iothub.TwinCollection, patch map[string]any, now iothub.Time, version int64) {
	if c.Props == nil {
		c.Props = map[string]any{}
	}
	if c.Metadata == nil {
		c.Metadata = &iothub.Metadata{}
	}
	c.Metadata.LastUpdated, c.Metadata.LastUpdatedVersion = now, version
	mergeValues(c.Props, c.Metadata, patch, now, version)
}

// mergeValues applies a JSON merge patch: null deletes a member, an object
// merges recursively (creating the member if needed, so {"p":{"q":null}}
// leaves p as {}), anything else (arrays too) replaces the member
// (device-protocol §11.3). meta, when not nil, is updated alongside.
func mergeValues(dst map[string]any, meta *iothub.Metadata, patch map[string]any, now iothub.Time, version int64) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			if meta != nil {
				delete(meta.Children, k)
			}
			continue
		}
		var child *iothub.Metadata
		if meta != nil {
			if meta.Children == nil {
				meta.Children = map[string]*iothub.Metadata{}
			}
			child = meta.Children[k]
			if child == nil {
				child = &iothub.Metadata{}
				meta.Children[k] = child
			}
			child.LastUpdated, child.LastUpdatedVersion = now, version
		}
		if pm, ok := v.(map[string]any); ok {
			dm, ok := dst[k].(map[string]any)
			if !ok {
				dm = map[string]any{}
				dst[k] = dm
				if child != nil {
					child.Children = nil
				}
			}
			mergeValues(dm, child, pm, now, version)
			continue
		}
		dst[k] = v
		if child != nil {
			child.Children = nil
		}
	}
}

// checkTwinETag compares If-Match with a twin etag. Quotes and W/ are
// stripped and * matches anything. An unquoted etag is ignored, as Azure
// does on twins (service-api §0.6).
func checkTwinETag(ifMatch, current string) error {
	if ifMatch == "" || !isQuoted(ifMatch) {
		return nil
	}
	return matchETag(ifMatch, current)
}

// matchETag compares If-Match with an etag (service-api §0.6).
func matchETag(ifMatch, current string) error {
	v := normalizeETag(ifMatch)
	if v == "*" || v == current {
		return nil
	}
	return iothub.Errorf(iothub.PreconditionFailed, "Precondition failed: ETag %s does not match the current ETag", ifMatch)
}

func isQuoted(s string) bool {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0]
}

func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	if isQuoted(s) {
		s = s[1 : len(s)-1]
	}
	return s
}

func copyCollection(c iothub.TwinCollection) iothub.TwinCollection {
	c.Props = deepCopyMap(c.Props)
	c.Metadata = copyMetadata(c.Metadata)
	return c
}

func copyMetadata(m *iothub.Metadata) *iothub.Metadata {
	if m == nil {
		return nil
	}
	out := &iothub.Metadata{LastUpdated: m.LastUpdated, LastUpdatedVersion: m.LastUpdatedVersion}
	if m.Children != nil {
		out.Children = make(map[string]*iothub.Metadata, len(m.Children))
		for k, c := range m.Children {
			out.Children[k] = copyMetadata(c)
		}
	}
	return out
}

// deepCopyMap copies nested maps; arrays and scalars are never mutated in
// place, so they are shared.
func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if vm, ok := v.(map[string]any); ok {
			v = deepCopyMap(vm)
		}
		out[k] = v
	}
	return out
}

// AnnounceModel records the IoT Plug and Play model a device (or module)
// announced in its CONNECT as its twin's modelId (device-protocol §4.1).
// A connection that announces none leaves the recorded one.
func (h *Hub) AnnounceModel(key, modelID string) error {
	if modelID == "" {
		return nil
	}
	e, err := h.entry(key)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rec.Load().Twin.ModelID == modelID {
		return nil
	}
	next := e.clone()
	next.Twin.ModelID = modelID
	next.TwinETag++
	return h.commitLocked(e, next)
}

// mergePatch merges a service patch (PATCH /twins) into next's tags and
// desired properties, and returns the desired notification it makes, if
// any. Versions and sizes are the caller's.
func mergePatch(next *Record, patch TwinPatch, now iothub.Time) (notify []byte) {
	if patch.Tags != nil {
		if next.Twin.Tags == nil {
			next.Twin.Tags = map[string]any{}
		}
		mergeValues(next.Twin.Tags, nil, patch.Tags, now, 0)
	}
	switch {
	case patch.ClearDesired:
		// Azure empties the section under a new $version, and the
		// device is told just that version.
		des := &next.Twin.Properties.Desired
		des.Version++
		des.Props = map[string]any{}
		des.Metadata = &iothub.Metadata{LastUpdated: now, LastUpdatedVersion: des.Version}
		notify, _ = json.Marshal(iothub.TwinCollection{Props: map[string]any{}, Version: des.Version})
	case patch.Desired != nil:
		notify = mergeDesired(next, patch.Desired, now)
	}
	return notify
}

// checkTwinSizes refuses tags or desired properties over Azure's size.
func checkTwinSizes(next *Record) error {
	if err := iothub.CheckSectionSize("tags", next.Twin.Tags); err != nil {
		return err
	}
	return iothub.CheckSectionSize("desired", next.Twin.Properties.Desired.Props)
}
