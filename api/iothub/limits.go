package iothub

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Twin limits (device-protocol §11.4, service-api §4.7).
const (
	MaxTagsSize     = 8 * 1024  // tags section, bytes by the hub's size formula
	MaxDesiredSize  = 32 * 1024 // desired section
	MaxReportedSize = 32 * 1024 // reported section
	MaxDepth        = 10        // nested object levels
	MaxKeyLength    = 1024      // bytes of UTF-8
	MaxStringLength = 4096      // bytes of UTF-8
	MaxSafeInteger  = 4503599627370495
	MinSafeInteger  = -4503599627370496
)

// ValidatePatch checks a twin patch (tags, desired or reported) against the
// hub's rules for keys and values: key characters and length, string
// length, integer range, nesting depth and no null inside arrays. A null
// member value is allowed: in a patch it deletes the member. The error is
// an ArgumentInvalid *Error whose message matches the hub's wording.
func ValidatePatch(props map[string]any) error {
	return validateObject(props, 1)
}

func validateObject(m map[string]any, depth int) error {
	if depth > MaxDepth {
		return Errorf(ArgumentInvalid, "Nested depth of twin property exceeds %d", MaxDepth)
	}
	for k, v := range m {
		if err := validateKey(k); err != nil {
			return err
		}
		if err := validateValue(k, v, depth, false); err != nil {
			return err
		}
	}
	return nil
}

func validateKey(k string) error {
	if k == "" {
		return Errorf(ArgumentInvalid, "Property name cannot be empty")
	}
	if len(k) > MaxKeyLength {
		return Errorf(ArgumentInvalid, "Length of property name %.32s... exceeds maximum length of %d", k, MaxKeyLength)
	}
	for _, r := range k {
		if r == '.' || r == '$' || r == ' ' || r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return Errorf(ArgumentInvalid, "Property name %s contains invalid character '%c'", k, r)
		}
	}
	return nil
}

func validateValue(k string, v any, depth int, inArray bool) error {
	switch x := v.(type) {
	case nil:
		if inArray {
			return Errorf(ArgumentInvalid, "Arrays cannot contain 'null' as value")
		}
	case string:
		if len(x) > MaxStringLength {
			return Errorf(ArgumentInvalid, "Value associated with property name %s has length %d that exceeds maximum length of %d", k, len(x), MaxStringLength)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil && (i > MaxSafeInteger || i < MinSafeInteger) {
			return Errorf(ArgumentInvalid, "Value associated with property name %s is out of the supported integer range", k)
		} else if err != nil && !strings.ContainsAny(string(x), ".eE") {
			return Errorf(ArgumentInvalid, "Value associated with property name %s is out of the supported integer range", k)
		}
	case float64, bool:
	case map[string]any:
		if inArray {
			for ck, cv := range x {
				if err := validateKey(ck); err != nil {
					return err
				}
				if cv == nil {
					return Errorf(ArgumentInvalid, "Value of Property or Tag cannot be null. Error in Property/Tag %s", ck)
				}
			}
		}
		return validateObject(x, depth+1)
	case []any:
		if depth+1 > MaxDepth {
			return Errorf(ArgumentInvalid, "Nested depth of twin property exceeds %d", MaxDepth)
		}
		for _, e := range x {
			if err := validateValue(k, e, depth+1, true); err != nil {
				return err
			}
		}
	default:
		return Errorf(ArgumentInvalid, "Property %s has an unsupported value type %T", k, v)
	}
	return nil
}

// SectionSize is the size of a twin section by the hub's formula: for each
// member, the UTF-8 length of its key plus the size of its value, where
// strings count their UTF-8 bytes without control characters, numbers 8,
// booleans 4 and objects and arrays the sum of their members
// (device-protocol §11.4).
func SectionSize(props map[string]any) int {
	n := 0
	for k, v := range props {
		n += len(k) + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		n := 0
		for len(x) > 0 {
			r, size := utf8.DecodeRuneInString(x)
			if r >= 0x20 && !(r >= 0x7f && r <= 0x9f) {
				n += size
			}
			x = x[size:]
		}
		return n
	case json.Number, float64:
		return 8
	case bool:
		return 4
	case map[string]any:
		return SectionSize(x)
	case []any:
		n := 0
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	}
	return 0
}

// CheckSectionSize returns an ArgumentInvalid error when a section named
// name ("tags", "desired" or "reported") is over its limit.
func CheckSectionSize(name string, props map[string]any) error {
	limit := map[string]int{"tags": MaxTagsSize, "desired": MaxDesiredSize, "reported": MaxReportedSize}[name]
	if limit == 0 {
		return fmt.Errorf("unknown twin section %q", name)
	}
	if n := SectionSize(props); n > limit {
		return Errorf(ArgumentInvalid, "Twin properties size %d exceeds maximum %d", n, limit)
	}
	return nil
}
