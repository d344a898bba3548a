package hub

import (
	"errors"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/query"
)

// QueryResult is the outcome of a query: its rows, ready to be encoded as
// JSON, and their item type.
type QueryResult struct {
	Rows     []any
	ItemType iothub.ItemType
}

// Query runs an IoT Hub query over the twins (service-api §6). A query
// Azure would reject is an ArgumentInvalid error naming the problem and
// its position.
func (h *Hub) Query(q string) (QueryResult, error) {
	if strings.TrimSpace(q) == "" {
		return QueryResult{}, iothub.Errorf(iothub.ArgumentNull, "the query is empty")
	}
	if len(q) > iothub.MaxQueryLength {
		return QueryResult{}, iothub.Errorf(iothub.ArgumentInvalid, "the query is longer than %d characters", iothub.MaxQueryLength)
	}
	parsed, err := query.Parse(q)
	if err != nil {
		return QueryResult{}, invalidQuery(err)
	}
	res := QueryResult{ItemType: iothub.ItemTwin}
	if parsed.Raw() {
		res.ItemType = iothub.ItemRaw
	}
	var docs []query.Doc
	switch parsed.From {
	case query.Devices:
		docs = twinDocs(h.deviceEntries())
	case query.Modules:
		docs = twinDocs(h.moduleEntries())
	case query.Jobs:
		res.ItemType = iothub.ItemDeviceJob
		docs = h.deviceJobDocs()
	}
	rows := parsed.Run(docs)
	res.Rows = make([]any, len(rows))
	for i, r := range rows {
		if d, ok := r.(renderer); ok {
			res.Rows[i] = d.render()
		} else {
			res.Rows[i] = r
		}
	}
	return res, nil
}

func invalidQuery(err error) error {
	var qe *query.Error
	if errors.As(err, &qe) {
		return iothub.Errorf(iothub.ArgumentInvalid, "The query is invalid. Please check the format of the query and try again. (%s)", qe.Error())
	}
	return iothub.Errorf(iothub.ArgumentInvalid, "The query is invalid: %v", err)
}

// renderer is a document that renders itself as a SELECT * row.
type renderer interface{ render() any }

func twinDocs(entries []*entry) []query.Doc {
	docs := make([]query.Doc, len(entries))
	all := make([]twinDoc, len(entries))
	for i, e := range entries {
		all[i] = twinDoc{e: e, rec: e.rec.Load()}
		docs[i] = &all[i]
	}
	return docs
}

// twinDoc is a twin as the query language sees it (service-api §6.3): the
// identity fields, tags and properties, with property names resolved
// case-insensitively.
type twinDoc struct {
	e   *entry
	rec *Record
}

func (d *twinDoc) render() any { return d.e.twin() }

// Lookup implements query.Doc.
func (d *twinDoc) Lookup(path []string) (any, bool) {
	r := d.rec
	dev := &r.Device
	var v any
	switch strings.ToLower(path[0]) {
	case "deviceid":
		v = dev.DeviceID
	case "moduleid":
		if r.ModuleID == "" {
			return nil, false
		}
		v = r.ModuleID
	case "etag":
		v = twinETag(r.TwinETag)
	case "deviceetag":
		v = dev.ETag
	case "status":
		v = string(dev.Status)
	case "statusreason":
		if dev.StatusReason != nil {
			v = *dev.StatusReason
		}
	case "statusupdatetime":
		v = dev.StatusUpdatedTime.String()
	case "connectionstate":
		v = string(iothub.Disconnected)
		if d.e.live.connected.Load() {
			v = string(iothub.Connected)
		}
	case "lastactivitytime":
		v = nanoTime(d.e.live.lastActivity.Load()).String()
	case "cloudtodevicemessagecount":
		v = float64(dev.CloudToDeviceMessageCount)
	case "authenticationtype":
		v = string(dev.Authentication.Type)
	case "modelid":
		v = r.Twin.ModelID
	case "version":
		v = float64(r.Twin.Version)
	case "capabilities":
		v = map[string]any{"iotEdge": dev.Capabilities.IoTEdge}
	case "devicescope":
		if dev.DeviceScope == "" {
			return nil, false
		}
		v = dev.DeviceScope
	case "parentscopes":
		if len(dev.ParentScopes) == 0 {
			return nil, false
		}
		scopes := make([]any, len(dev.ParentScopes))
		for i, s := range dev.ParentScopes {
			scopes[i] = s
		}
		v = scopes
	case "configurations":
		m := make(map[string]any, len(r.Twin.Configurations))
		for id, st := range r.Twin.Configurations {
			m[id] = map[string]any{"status": st.Status}
		}
		v = m
	case "tags":
		tags := r.Twin.Tags
		if tags == nil {
			tags = map[string]any{}
		}
		v = tags
	case "properties":
		return lookupProperties(&r.Twin.Properties, path[1:])
	default:
		return nil, false
	}
	return descend(v, path[1:])
}

func lookupProperties(p *iothub.TwinProperties, path []string) (any, bool) {
	if len(path) == 0 {
		return map[string]any{"desired": sectionMap(p.Desired), "reported": sectionMap(p.Reported)}, true
	}
	var c *iothub.TwinCollection
	switch strings.ToLower(path[0]) {
	case "desired":
		c = &p.Desired
	case "reported":
		c = &p.Reported
	default:
		return nil, false
	}
	if len(path) == 1 {
		return sectionMap(*c), true
	}
	if path[1] == iothub.VersionKey {
		return descend(float64(c.Version), path[2:])
	}
	return descend(c.Props, path[1:])
}

func sectionMap(c iothub.TwinCollection) map[string]any {
	m := make(map[string]any, len(c.Props)+1)
	for k, v := range c.Props {
		m[k] = v
	}
	m[iothub.VersionKey] = float64(c.Version)
	return m
}

// descend follows path through nested objects; names match exactly or,
// failing that, case-insensitively.
func descend(v any, path []string) (any, bool) {
	for _, seg := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		next, ok := m[seg]
		if !ok {
			for k, x := range m {
				if strings.EqualFold(k, seg) {
					next, ok = x, true
					break
				}
			}
		}
		if !ok {
			return nil, false
		}
		v = next
	}
	return v, true
}
