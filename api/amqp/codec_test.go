package amqp

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Ensure that every type the hub writes reads back as itself.
func TestRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123).UTC()
	values := []any{
		nil, true, false, uint8(7), uint16(300), uint32(70000), uint64(1 << 40), int32(-5), int64(-1 << 40), 2.5,
		"", "hello", strings.Repeat("x", 300), Symbol("amqp:not-found"), []byte{0, 1, 2}, at, UUID{1, 2, 3},
		[]any{}, []any{"a", uint32(1), []any{nil}},
		map[any]any{"status-code": int32(200), Symbol("k"): "v"},
		&Described{uint64(0x10), []any{"container", nil, uint32(65536)}},
		&Described{Symbol("com.example:thing"), "v"},
	}
	for _, v := range values {
		b, err := Append(nil, v)
		if err != nil {
			t.Fatalf("Append(%#v): %v", v, err)
		}
		got, rest, err := Decode(b)
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, v) {
			t.Errorf("round trip of %#v: %#v, %d left, %v", v, got, len(rest), err)
		}
	}
	b, _ := Append(nil, []string{"0", "1"})
	if got, _, err := Decode(b); err != nil || !reflect.DeepEqual(got, []any{"0", "1"}) || b[0] != 0xf0 {
		t.Errorf("string array: %#v, %v", got, err)
	}
	b, _ = Append(nil, []Symbol{"ANONYMOUS", "PLAIN"})
	if got, _, err := Decode(b); err != nil || !reflect.DeepEqual(got, []any{Symbol("ANONYMOUS"), Symbol("PLAIN")}) {
		t.Errorf("symbol array: %#v, %v", got, err)
	}
}

// Ensure that the compact encodings clients choose decode to the same
// types as the wide ones.
func TestCompactForms(t *testing.T) {
	tests := []struct {
		in   []byte
		want any
	}{
		{[]byte{0x43}, uint32(0)},
		{[]byte{0x44}, uint64(0)},
		{[]byte{0x52, 9}, uint32(9)},
		{[]byte{0x53, 0x12}, uint64(0x12)},
		{[]byte{0x54, 0xff}, int32(-1)},
		{[]byte{0x55, 0xfe}, int64(-2)},
		{[]byte{0x56, 1}, true},
		{[]byte{0x45}, []any{}},
		{[]byte{0xc0, 3, 2, 0x41, 0x40}, []any{true, nil}},
		{[]byte{0xc1, 5, 2, 0xa1, 1, 'k', 0x42}, map[any]any{"k": false}},
		{[]byte{0xe0, 6, 2, 0xa3, 1, 'a', 1, 'b'}, []any{Symbol("a"), Symbol("b")}},
		{[]byte{0x00, 0x53, 0x24, 0x45}, &Described{uint64(0x24), []any{}}},
	}
	for _, tt := range tests {
		got, rest, err := Decode(tt.in)
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(% x) = %#v, %d left, %v; want %#v", tt.in, got, len(rest), err, tt.want)
		}
	}
}

// Ensure that malformed input is an error, never a panic or a huge
// allocation.
func TestMalformed(t *testing.T) {
	deep := bytes.Repeat([]byte{0x00, 0x53, 0x01}, 40)
	deep = append(deep, 0x40)
	for name, in := range map[string][]byte{
		"empty":           {},
		"truncated uint":  {0x70, 0, 0},
		"string too long": {0xa1, 10, 'a'},
		"huge list count": {0xd0, 0, 0, 0, 4, 0x7f, 0xff, 0xff, 0xff},
		"bad utf-8":       {0xa1, 1, 0xff},
		"odd map":         {0xc1, 2, 1, 0x40},
		"unknown code":    {0x99},
		"deep nesting":    deep,
		"list key":        {0xc1, 4, 2, 0x45, 0x40},
	} {
		if _, _, err := Decode(in); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzDecode checks that no input makes the decoder panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x00, 0x53, 0x10, 0xc0, 3, 1, 0xa1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _, err := Decode(b)
		if err == nil {
			if _, err := Append(nil, v); err != nil {
				t.Fatalf("decoded %#v but cannot encode it: %v", v, err)
			}
		}
	})
}

// Ensure that a frame reads back as written, that a data offset past the
// header is skipped, and that sizes outside the limits are refused.
func TestFrames(t *testing.T) {
	b, err := AppendFrame(nil, 7, &SASLInit{Mechanism: "ANONYMOUS"}, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	typ, ch, body, err := ReadFrame(bytes.NewReader(b), 1024)
	if err != nil || typ != FrameSASL || ch != 7 {
		t.Fatalf("ReadFrame: %d %d %v", typ, ch, err)
	}
	v, rest, err := Decode(body)
	if err != nil || v.(*Described).Descriptor != uint64(0x41) || string(rest) != "payload" {
		t.Fatalf("body %#v %q %v", v, rest, err)
	}
	extended := []byte{0, 0, 0, 12, 3, 0, 0, 1, 9, 9, 9, 9} // a 12-byte header, empty body
	if _, _, body, err := ReadFrame(bytes.NewReader(extended), 1024); err != nil || len(body) != 0 {
		t.Fatalf("extended header: %q, %v", body, err)
	}
	for name, in := range map[string][]byte{
		"too small":   {0, 0, 0, 4, 2, 0, 0, 0},
		"too large":   {0, 0, 4, 1, 2, 0, 0, 0},
		"bad offset":  {0, 0, 0, 8, 1, 0, 0, 0},
		"past itself": {0, 0, 0, 8, 3, 0, 0, 0},
	} {
		if _, _, _, err := ReadFrame(bytes.NewReader(in), 1024); err == nil {
			t.Errorf("%s: read", name)
		}
	}
}

// Ensure that hub errors and AMQP conditions map both ways: every code to
// its condition, and every condition back to a code of that condition.
func TestConditions(t *testing.T) {
	for _, c := range conditions {
		if Condition(c.code) != c.condition || Condition(ErrorCode(string(c.condition))) != c.condition {
			t.Errorf("%s and %s do not map to each other", c.code, c.condition)
		}
	}
	if Condition(iothub.ServerError) != "amqp:internal-error" || ErrorCode("amqp:internal-error") != iothub.ServerError {
		t.Error("unmapped errors")
	}
}

func TestAsInt(t *testing.T) {
	for v, want := range map[any]int64{int8(-1): -1, int16(2): 2, int32(200): 200, int64(-5): -5, uint8(7): 7, uint32(9): 9} {
		if got, ok := AsInt(v); !ok || got != want {
			t.Errorf("AsInt(%T %v) = %d, %v", v, v, got, ok)
		}
	}
	for _, v := range []any{"1", nil, uint64(1 << 63), 1.5} {
		if _, ok := AsInt(v); ok {
			t.Errorf("AsInt(%T %v) read an integer", v, v)
		}
	}
}
