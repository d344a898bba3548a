package iothub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Twin is a device or module twin as the service API renders it
// (service-api §4.1). Note statusUpdateTime, not statusUpdatedTime.
type Twin struct {
	DeviceID                  string          `json:"deviceId"`
	ModuleID                  string          `json:"moduleId,omitempty"`
	ETag                      string          `json:"etag"`
	DeviceETag                string          `json:"deviceEtag"`
	Status                    DeviceStatus    `json:"status"`
	StatusReason              *string         `json:"statusReason"`
	StatusUpdateTime          Time            `json:"statusUpdateTime"`
	ConnectionState           ConnectionState `json:"connectionState"`
	LastActivityTime          Time            `json:"lastActivityTime"`
	CloudToDeviceMessageCount int             `json:"cloudToDeviceMessageCount"`
	AuthenticationType        AuthType        `json:"authenticationType"`
	X509Thumbprint            X509Thumbprint  `json:"x509Thumbprint"`
	ModelID                   string          `json:"modelId"`
	Version                   int64           `json:"version"`
	Capabilities              *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope               string          `json:"deviceScope,omitempty"`
	ParentScopes              []string        `json:"parentScopes,omitempty"`
	// Configurations says which automatic configurations target the twin
	// and which one was applied (service-api §4.1, §9).
	Configurations map[string]ConfigurationStatus `json:"configurations,omitempty"`
	Tags           map[string]any                 `json:"tags"`
	Properties     TwinProperties                 `json:"properties"`
}

// TwinProperties holds a twin's desired and reported sections. Over MQTT the
// device receives exactly this object, without $metadata, as the body of a
// twin GET response (device-protocol §11.1).
type TwinProperties struct {
	Desired  TwinCollection `json:"desired"`
	Reported TwinCollection `json:"reported"`
}

// TwinPatch is the body of a twin PATCH (merge) or PUT (replace) and the
// updateTwin of a scheduleUpdateTwin job: only tags and desired properties
// are applied; everything else a client sends (C# round-trips the whole
// twin) is ignored (service-api §4.4, §7.1).
type TwinPatch struct {
	ETag       string           `json:"etag,omitempty"`
	Tags       map[string]any   `json:"tags,omitempty"`
	Properties *PatchProperties `json:"properties,omitempty"`
}

// PatchProperties holds the desired properties of a TwinPatch.
// DesiredNull is set when the patch says "desired": null, which on Azure
// removes every desired property.
type PatchProperties struct {
	Desired     TwinCollection `json:"desired"`
	DesiredNull bool           `json:"-"`
}

// MarshalJSON writes desired, or null for DesiredNull.
func (p PatchProperties) MarshalJSON() ([]byte, error) {
	if p.DesiredNull {
		return []byte(`{"desired":null}`), nil
	}
	d, err := json.Marshal(p.Desired)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(`{"desired":`), d...), '}'), nil
}

// UnmarshalJSON reads desired, telling null from an empty object.
func (p *PatchProperties) UnmarshalJSON(data []byte) error {
	var raw struct {
		Desired json.RawMessage `json:"desired"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*p = PatchProperties{}
	if string(bytes.TrimSpace(raw.Desired)) == "null" {
		p.DesiredNull = true
		return nil
	}
	if raw.Desired == nil {
		return nil
	}
	return json.Unmarshal(raw.Desired, &p.Desired)
}

// NewTwinPatch returns a patch of tags and desired properties; a nil map
// leaves that section alone, a nil member value deletes the member.
func NewTwinPatch(tags, desired map[string]any) TwinPatch {
	p := TwinPatch{Tags: tags}
	if desired != nil {
		p.Properties = &PatchProperties{Desired: TwinCollection{Props: desired}}
	}
	return p
}

// ClearsDesired reports whether the patch's desired section is null: a
// PATCH that removes every desired property.
func (p TwinPatch) ClearsDesired() bool { return p.Properties != nil && p.Properties.DesiredNull }

// DesiredProps returns the patch's desired properties, nil when absent.
func (p TwinPatch) DesiredProps() map[string]any {
	if p.Properties == nil {
		return nil
	}
	if p.Properties.Desired.Props == nil {
		return map[string]any{}
	}
	return p.Properties.Desired.Props
}

// TwinCollection is one section of a twin (desired or reported): the user's
// properties plus the read-only $version and $metadata members, which share
// the same JSON object on the wire (service-api §4.1).
type TwinCollection struct {
	// Props are the user properties. Numbers are json.Number.
	Props map[string]any
	// Version is $version; zero omits it (as in a patch request).
	Version int64
	// Metadata is $metadata; nil omits it (as on the device side).
	Metadata *Metadata
}

// Metadata is one node of a section's $metadata tree (service-api §4.1,
// device-protocol §11.5): when the node was last written and, for desired
// properties, at which desired $version.
type Metadata struct {
	LastUpdated        Time
	LastUpdatedVersion int64 // zero omits it (reported metadata has none)
	Children           map[string]*Metadata
}

// Reserved member names inside a twin section.
const (
	VersionKey  = "$version"
	MetadataKey = "$metadata"
)

// MarshalJSON writes the properties in key order, then $metadata, then
// $version, the order the hub uses.
func (c TwinCollection) MarshalJSON() ([]byte, error) {
	b := append(make([]byte, 0, 256), '{')
	n := 0
	for _, k := range sortedKeys(c.Props) {
		if n++; n > 1 {
			b = append(b, ',')
		}
		vb, err := json.Marshal(c.Props[k])
		if err != nil {
			return nil, err
		}
		b = append(appendKey(b, k), vb...)
	}
	if c.Metadata != nil {
		if n++; n > 1 {
			b = append(b, ',')
		}
		b = c.Metadata.appendJSON(appendKey(b, MetadataKey))
	}
	if c.Version != 0 {
		if n++; n > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(appendKey(b, VersionKey), c.Version, 10)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON splits $version and $metadata from the user properties.
// The object is decoded once; $metadata is converted from the decoded map.
func (c *TwinCollection) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		*c = TwinCollection{}
		return nil
	}
	m, err := DecodeObject(data)
	if err != nil {
		return fmt.Errorf("twin collection: %w", err)
	}
	out := TwinCollection{Props: m}
	if v, ok := m[VersionKey]; ok {
		delete(m, VersionKey)
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("twin collection: %s is not a number", VersionKey)
		}
		if out.Version, err = n.Int64(); err != nil {
			return fmt.Errorf("twin collection %s: %w", VersionKey, err)
		}
	}
	if v, ok := m[MetadataKey]; ok {
		delete(m, MetadataKey)
		if out.Metadata, err = metadataFrom(v); err != nil {
			return fmt.Errorf("twin collection %s: %w", MetadataKey, err)
		}
	}
	*c = out
	return nil
}

// metadataFrom converts a decoded $metadata node.
func metadataFrom(v any) (*Metadata, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("metadata node is not an object")
	}
	m := &Metadata{}
	for k, x := range obj {
		var err error
		switch k {
		case "$lastUpdated":
			s, _ := x.(string)
			m.LastUpdated, err = ParseTime(s)
		case "$lastUpdatedVersion":
			n, _ := x.(json.Number)
			m.LastUpdatedVersion, err = n.Int64()
		case "$lastUpdatedBy", "$lastUpdatedByDigest":
		default:
			if m.Children == nil {
				m.Children = make(map[string]*Metadata, len(obj))
			}
			m.Children[k], err = metadataFrom(x)
		}
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", k, err)
		}
	}
	return m, nil
}

// MarshalJSON writes $lastUpdated, $lastUpdatedVersion, then the children.
func (m *Metadata) MarshalJSON() ([]byte, error) { return m.appendJSON(nil), nil }

// appendJSON appends the node and its children in one pass: going through
// json.Marshal for each child would validate every subtree once per level.
func (m *Metadata) appendJSON(b []byte) []byte {
	b = append(b, `{"$lastUpdated":"`...)
	b = append(b, m.LastUpdated.String()...)
	b = append(b, '"')
	if m.LastUpdatedVersion != 0 {
		b = append(b, `,"$lastUpdatedVersion":`...)
		b = strconv.AppendInt(b, m.LastUpdatedVersion, 10)
	}
	keys := make([]string, 0, len(m.Children))
	for k := range m.Children {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b = append(b, ',')
		if c := m.Children[k]; c != nil {
			b = c.appendJSON(appendKey(b, k))
		} else {
			b = append(appendKey(b, k), "null"...)
		}
	}
	return append(b, '}')
}

// UnmarshalJSON reads a metadata node and its children.
func (m *Metadata) UnmarshalJSON(data []byte) error {
	v, err := DecodeValue(data)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	out, err := metadataFrom(v)
	if err != nil {
		return err
	}
	*m = *out
	return nil
}

// DecodeValue decodes one JSON value keeping numbers as json.Number, the
// form twin properties are held in.
func DecodeValue(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return v, nil
}

// DecodeObject decodes a JSON object with numbers as json.Number. It is the
// parser for twin patches: anything but an object is an error.
func DecodeObject(data []byte) (map[string]any, error) {
	v, err := DecodeValue(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the body is not a JSON object")
	}
	return m, nil
}

// appendKey appends k as a JSON string and a colon, escaped exactly as
// encoding/json does.
func appendKey(b []byte, k string) []byte {
	plain := true
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		return b
	}
	kb, _ := json.Marshal(k)
	return append(append(b, kb...), ':')
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
