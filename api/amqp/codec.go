// Package amqp is the AMQP 1.0 type system (OASIS AMQP 1.0, part 1) and
// the few protocol constants the IoT Hub service clients need: how values,
// performatives and message sections are encoded. It does no I/O; the
// hub's AMQP face and the service client's sender frame it themselves.
package amqp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Values decode to: nil, bool, the Go integer and float types of their
// width, string, Symbol, []byte, time.Time (timestamp), UUID, []any (list
// and array), map[any]any and *Described.

// Symbol is an AMQP symbol: ASCII names such as error conditions.
type Symbol string

// UUID is an AMQP uuid.
type UUID [16]byte

// Described is a value with a descriptor (a ulong code or a symbol).
type Described struct {
	Descriptor any
	Value      any
}

// Code returns the descriptor as a numeric code, or 0 for a symbol.
func (d *Described) Code() uint64 {
	c, _ := d.Descriptor.(uint64)
	return c
}

var errShort = errors.New("amqp: truncated value")

// decoder reads values from a buffer.
type decoder struct {
	b     []byte
	depth int
}

func (d *decoder) need(n int) ([]byte, error) {
	if n < 0 || len(d.b) < n {
		return nil, errShort
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v, nil
}

// decode reads one value.
func (d *decoder) decode() (any, error) {
	c, err := d.need(1)
	if err != nil {
		return nil, err
	}
	if c[0] == 0x00 {
		if d.depth++; d.depth > 32 {
			return nil, errors.New("amqp: values nest too deep")
		}
		defer func() { d.depth-- }()
		desc, err := d.decode()
		if err != nil {
			return nil, err
		}
		v, err := d.decode()
		if err != nil {
			return nil, err
		}
		return &Described{Descriptor: desc, Value: v}, nil
	}
	return d.value(c[0])
}

// fixedWidth is the size of each fixed-width encoding's value; 0 for the
// others.
var fixedWidth = [256]uint8{
	0x56: 1, 0x50: 1, 0x51: 1, 0x52: 1, 0x53: 1, 0x54: 1, 0x55: 1,
	0x60: 2, 0x61: 2,
	0x70: 4, 0x71: 4, 0x72: 4, 0x73: 4,
	0x80: 8, 0x81: 8, 0x82: 8, 0x83: 8,
	0x98: 16,
}

// fixedValue converts the bytes of a fixed-width encoding.
func fixedValue(code byte, b []byte) any {
	switch code {
	case 0x56:
		return b[0] != 0
	case 0x50:
		return b[0]
	case 0x51:
		return int8(b[0])
	case 0x52:
		return uint32(b[0])
	case 0x53:
		return uint64(b[0])
	case 0x54:
		return int32(int8(b[0]))
	case 0x55:
		return int64(int8(b[0]))
	case 0x60:
		return binary.BigEndian.Uint16(b)
	case 0x61:
		return int16(binary.BigEndian.Uint16(b))
	case 0x70:
		return binary.BigEndian.Uint32(b)
	case 0x71:
		return int32(binary.BigEndian.Uint32(b))
	case 0x72:
		return math.Float32frombits(binary.BigEndian.Uint32(b))
	case 0x73:
		return rune(binary.BigEndian.Uint32(b))
	case 0x80:
		return binary.BigEndian.Uint64(b)
	case 0x81:
		return int64(binary.BigEndian.Uint64(b))
	case 0x82:
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	case 0x83:
		return time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC()
	}
	var u UUID // 0x98
	copy(u[:], b)
	return u
}

func (d *decoder) value(code byte) (any, error) {
	if n := fixedWidth[code]; n > 0 {
		b, err := d.need(int(n))
		if err != nil {
			return nil, err
		}
		return fixedValue(code, b), nil
	}
	switch code {
	case 0x40:
		return nil, nil
	case 0x41:
		return true, nil
	case 0x42:
		return false, nil
	case 0x43:
		return uint32(0), nil
	case 0x44:
		return uint64(0), nil
	case 0x45:
		return []any{}, nil
	case 0xa0, 0xa1, 0xa3, 0xb0, 0xb1, 0xb3:
		n, err := d.size(code&0xf0 == 0xb0)
		if err != nil {
			return nil, err
		}
		b, err := d.need(n)
		if err != nil {
			return nil, err
		}
		switch code & 0x0f {
		case 0x00:
			return append([]byte(nil), b...), nil
		case 0x01:
			if !utf8.Valid(b) {
				return nil, errors.New("amqp: string is not UTF-8")
			}
			return string(b), nil
		default:
			return Symbol(b), nil
		}
	case 0xc0, 0xc1, 0xd0, 0xd1:
		wide := code&0xf0 == 0xd0
		n, err := d.size(wide)
		if err != nil {
			return nil, err
		}
		body, err := d.need(n)
		if err != nil {
			return nil, err
		}
		inner := &decoder{b: body, depth: d.depth + 1}
		if inner.depth > 32 {
			return nil, errors.New("amqp: values nest too deep")
		}
		count, err := inner.size(wide)
		if err != nil {
			return nil, err
		}
		if count > len(body) {
			return nil, errShort
		}
		items := make([]any, count)
		for i := range items {
			if items[i], err = inner.decode(); err != nil {
				return nil, err
			}
		}
		if code&0x0f == 0x00 {
			return items, nil
		}
		if count%2 != 0 {
			return nil, errors.New("amqp: map with an odd number of items")
		}
		m := make(map[any]any, count/2)
		for i := 0; i < count; i += 2 {
			k := items[i]
			switch k.(type) {
			case []any, map[any]any, []byte, *Described:
				return nil, errors.New("amqp: map key of an unhashable type")
			}
			m[k] = items[i+1]
		}
		return m, nil
	case 0xe0, 0xf0:
		wide := code == 0xf0
		n, err := d.size(wide)
		if err != nil {
			return nil, err
		}
		body, err := d.need(n)
		if err != nil {
			return nil, err
		}
		inner := &decoder{b: body, depth: d.depth + 1}
		count, err := inner.size(wide)
		if err != nil {
			return nil, err
		}
		if count > len(body) {
			return nil, errShort
		}
		ec, err := inner.need(1)
		if err != nil {
			return nil, err
		}
		if ec[0] == 0x00 {
			return nil, errors.New("amqp: arrays of described values are not supported")
		}
		items := make([]any, count)
		for i := range items {
			if items[i], err = inner.value(ec[0]); err != nil {
				return nil, err
			}
		}
		return items, nil
	}
	return nil, fmt.Errorf("amqp: unknown format code %#x", code)
}

func (d *decoder) size(wide bool) (int, error) {
	if wide {
		b, err := d.need(4)
		if err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(b)
		if n > math.MaxInt32 {
			return 0, errShort
		}
		return int(n), nil
	}
	b, err := d.need(1)
	if err != nil {
		return 0, err
	}
	return int(b[0]), nil
}

// Decode reads one value from b and returns the rest.
func Decode(b []byte) (any, []byte, error) {
	d := &decoder{b: b}
	v, err := d.decode()
	return v, d.b, err
}

// Encoding. Values encode in their widest form except where a short form
// is free to choose; append returns b with v appended.

// Append appends the encoding of v to b.
func Append(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, 0x40), nil
	case bool:
		if x {
			return append(b, 0x41), nil
		}
		return append(b, 0x42), nil
	case uint8:
		return append(b, 0x50, x), nil
	case uint16:
		return binary.BigEndian.AppendUint16(append(b, 0x60), x), nil
	case uint32:
		return binary.BigEndian.AppendUint32(append(b, 0x70), x), nil
	case uint64:
		if x < 256 {
			// smallulong: how descriptors are sent, and the only form
			// go-amqp accepts for a frame's performative.
			return append(b, 0x53, byte(x)), nil
		}
		return binary.BigEndian.AppendUint64(append(b, 0x80), x), nil
	case int8:
		return append(b, 0x51, byte(x)), nil
	case int16:
		return binary.BigEndian.AppendUint16(append(b, 0x61), uint16(x)), nil
	case int32:
		return binary.BigEndian.AppendUint32(append(b, 0x71), uint32(x)), nil
	case int64:
		return binary.BigEndian.AppendUint64(append(b, 0x81), uint64(x)), nil
	case int:
		return binary.BigEndian.AppendUint64(append(b, 0x81), uint64(x)), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 0x72), math.Float32bits(x)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 0x82), math.Float64bits(x)), nil
	case time.Time:
		return binary.BigEndian.AppendUint64(append(b, 0x83), uint64(x.UnixMilli())), nil
	case UUID:
		return append(append(b, 0x98), x[:]...), nil
	case []byte:
		return appendVariable(b, 0xa0, x), nil
	case string:
		return appendVariable(b, 0xa1, []byte(x)), nil
	case Symbol:
		return appendVariable(b, 0xa3, []byte(x)), nil
	case []Symbol:
		// An array of symbols, as capabilities and mechanisms are sent.
		items := make([]string, len(x))
		for i, sym := range x {
			items[i] = string(sym)
		}
		return appendArray(b, 0xb3, items), nil
	case []string:
		// An array of strings, as Event Hubs sends partition ids.
		return appendArray(b, 0xb1, x), nil
	case []any:
		return appendCompound(b, 0xd0, x)
	case map[any]any:
		items := make([]any, 0, 2*len(x))
		for k, val := range x {
			items = append(items, k, val)
		}
		return appendCompound(b, 0xd1, items)
	case *Described:
		b = append(b, 0x00)
		b, err := Append(b, x.Descriptor)
		if err != nil {
			return nil, err
		}
		return Append(b, x.Value)
	}
	return nil, fmt.Errorf("amqp: cannot encode %T", v)
}

// appendArray appends an array32 of str32 or sym32 items.
func appendArray(b []byte, code byte, items []string) []byte {
	body := binary.BigEndian.AppendUint32(nil, uint32(len(items)))
	body = append(body, code)
	for _, s := range items {
		body = binary.BigEndian.AppendUint32(body, uint32(len(s)))
		body = append(body, s...)
	}
	b = binary.BigEndian.AppendUint32(append(b, 0xf0), uint32(len(body)))
	return append(b, body...)
}

func appendVariable(b []byte, code byte, v []byte) []byte {
	if len(v) <= 255 {
		return append(append(b, code, byte(len(v))), v...)
	}
	b = binary.BigEndian.AppendUint32(append(b, code|0x10), uint32(len(v)))
	return append(b, v...)
}

func appendCompound(b []byte, code byte, items []any) ([]byte, error) {
	body := binary.BigEndian.AppendUint32(nil, uint32(len(items)))
	for _, it := range items {
		var err error
		if body, err = Append(body, it); err != nil {
			return nil, err
		}
	}
	b = binary.BigEndian.AppendUint32(append(b, code), uint32(len(body)))
	return append(b, body...), nil
}

// Field returns item i of a described list, or nil.
func Field(l []any, i int) any {
	if i < len(l) {
		return l[i]
	}
	return nil
}

// AsUint reads any unsigned integer field.
func AsUint(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	return 0, false
}

// AsInt reads any integer field, signed or not, that fits an int64.
func AsInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	if u, ok := AsUint(v); ok && u <= 1<<63-1 {
		return int64(u), true
	}
	return 0, false
}

// AsString reads a string or symbol field.
func AsString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case Symbol:
		return string(x)
	}
	return ""
}

// Describe returns value described by a numeric code, as performatives and
// message sections are.
func Describe(code uint64, value any) *Described { return &Described{Descriptor: code, Value: value} }
