package topic

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Property is one member of a property bag. A nil Value is a key written
// without '=' ("key"); an empty one is "key=" (device-protocol §7.1).
type Property struct {
	Key   string
	Value *string
}

// Properties is a property bag in wire order.
type Properties []Property

// System property keys, as they read after decoding (device-protocol §7.2).
const (
	MessageID       = "$.mid"
	CorrelationID   = "$.cid"
	UserID          = "$.uid"
	ContentType     = "$.ct"
	ContentEncoding = "$.ce"
	To              = "$.to"
	Expiry          = "$.exp"
)

// Get returns the value of the last member named key (duplicate keys: last
// wins) and whether one exists.
func (p Properties) Get(key string) (string, bool) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i].Key == key {
			if p[i].Value == nil {
				return "", true
			}
			return *p[i].Value, true
		}
	}
	return "", false
}

// Set appends key=value.
func (p Properties) Set(key, value string) Properties {
	return append(p, Property{Key: key, Value: &value})
}

// Encode renders the bag: keys and values percent-encoded ('$' as %24, so
// system keys read "%24.mid"), joined with '&'.
func (p Properties) Encode() string {
	parts := make([]string, len(p))
	for i, prop := range p {
		parts[i] = iothub.Escape(prop.Key)
		if prop.Value != nil {
			parts[i] += "=" + iothub.Escape(*prop.Value)
		}
	}
	return strings.Join(parts, "&")
}

// ParseProperties parses a property bag: one leading '?' and one trailing
// '/' are dropped, members split at '&' and then at the first '=', and keys
// and values are percent-decoded without turning '+' into a space
// (device-protocol §7.1). Empty members are skipped.
func ParseProperties(s string) (Properties, error) {
	s = strings.TrimPrefix(s, "?")
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return nil, nil
	}
	if strings.Contains(s, "/") {
		return nil, fmt.Errorf("property bag contains an unencoded '/'")
	}
	var p Properties
	for _, item := range strings.Split(s, "&") {
		if item == "" {
			continue
		}
		k, v, hasValue := strings.Cut(item, "=")
		key, err := url.PathUnescape(k)
		if err != nil || key == "" {
			return nil, fmt.Errorf("property bag: invalid key %q", k)
		}
		prop := Property{Key: key}
		if hasValue {
			val, err := url.PathUnescape(v)
			if err != nil {
				return nil, fmt.Errorf("property bag: invalid value for %q", key)
			}
			prop.Value = &val
		}
		p = append(p, prop)
	}
	return p, nil
}
