package amqp

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }
func u8(v uint8) *uint8    { return &v }

// performatives is the catalogue the table and fuzz tests share: each
// performative with its fields set as a peer would send them.
var performatives = []Performative{
	&Open{ContainerID: "c", Hostname: "localhost", MaxFrameSize: 65536, ChannelMax: 255, IdleTimeout: 120000,
		OfferedCapabilities: []Symbol{"ANONYMOUS-RELAY"}, Properties: map[any]any{Symbol("product"): "x"}},
	&Open{ContainerID: "bare"},
	&Begin{RemoteChannel: u16(3), NextOutgoingID: 1, IncomingWindow: 5000, OutgoingWindow: 5000, HandleMax: 255},
	&Begin{IncomingWindow: 100, OutgoingWindow: 100, HandleMax: 1<<32 - 1},
	&Attach{Name: "l", Handle: 2, Role: RoleReceiver, SndSettleMode: u8(SndSettled), RcvSettleMode: u8(RcvFirst),
		Source: &Source{Address: "hub/ConsumerGroups/$default/Partitions/0",
			Filter: map[any]any{Symbol("apache.org:selector-filter:string"): Describe(0x468C00000004, "amqp.annotation.x-opt-offset > '-1'")}},
		Target: &Target{Address: "consumer"}, InitialDeliveryCount: u32(0), MaxMessageSize: 1 << 20,
		DesiredCapabilities: []Symbol{"com.microsoft:georeplication"}, Properties: map[any]any{Symbol("com.microsoft:epoch"): int64(0)}},
	&Attach{Name: "refused", Handle: 0, Role: RoleSender, Target: &Target{Address: "$cbs"}},
	&Flow{NextIncomingID: u32(1), IncomingWindow: 5000, NextOutgoingID: 2, OutgoingWindow: 5000,
		Handle: u32(1), DeliveryCount: u32(0), LinkCredit: u32(300), Drain: true},
	&Flow{IncomingWindow: 10, OutgoingWindow: 10},
	&Transfer{Handle: 1, DeliveryID: u32(9), DeliveryTag: []byte{0, 0, 0, 9}, MessageFormat: u32(0), Settled: true, More: true},
	&Transfer{Handle: 1, State: &Accepted{}},
	&Disposition{Role: RoleReceiver, First: 3, Last: u32(5), Settled: true, State: &Rejected{Error: Errorf("amqp:not-found", "no %s", "device")}},
	&Disposition{First: 1, State: &Modified{DeliveryFailed: true, MessageAnnotations: map[any]any{Symbol("k"): "v"}}},
	&Disposition{First: 1, State: &Released{}},
	&Disposition{First: 1, State: &Received{SectionNumber: 1, SectionOffset: 7}},
	&Detach{Handle: 4, Closed: true, Error: &Error{Condition: "amqp:link:redirect", Description: "moved",
		Info: map[any]any{Symbol("port"): int32(5671), Symbol("hostname"): "localhost"}}},
	&Detach{Handle: 4},
	&End{Error: Errorf("amqp:internal-error", "boom")},
	&End{},
	&Close{},
	&SASLMechanisms{Mechanisms: []Symbol{"ANONYMOUS", "PLAIN"}},
	&SASLInit{Mechanism: "PLAIN", InitialResponse: []byte("\x00user\x00pass"), Hostname: "localhost"},
	&SASLOutcome{Code: SASLAuth},
}

// Ensure that every performative reads back as written, through a frame.
func TestPerformativeRoundTrip(t *testing.T) {
	for _, p := range performatives {
		b, err := AppendFrame(nil, 5, p, []byte("tail"))
		if err != nil {
			t.Fatalf("AppendFrame(%#v): %v", p, err)
		}
		typ, ch, body, err := ReadFrame(bytes.NewReader(b), 1<<20)
		if err != nil || ch != 5 {
			t.Fatalf("ReadFrame of %T: channel %d, %v", p, ch, err)
		}
		if sasl := p.Descriptor() >= DescSASLMechanisms; sasl != (typ == FrameSASL) {
			t.Errorf("%T went in a frame of type %d", p, typ)
		}
		got, payload, err := Unmarshal(body)
		if err != nil || string(payload) != "tail" {
			t.Fatalf("Unmarshal of %T: %q, %v", p, payload, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("round trip of %T:\n got %#v\nwant %#v", p, got, p)
		}
	}
}

// Ensure that every field position is written, trailing nulls too, and
// that the fields pyamqp reads without a default are explicit
// (next-wave-protocols §0).
func TestPerformativeArity(t *testing.T) {
	arity := map[uint64]int{DescOpen: 10, DescBegin: 8, DescAttach: 14, DescFlow: 11, DescTransfer: 11,
		DescDisposition: 6, DescDetach: 3, DescEnd: 1, DescClose: 1}
	for _, p := range []Performative{&Open{}, &Begin{}, &Attach{}, &Flow{}, &Transfer{}, &Disposition{}, &Detach{}, &End{}, &Close{}} {
		b, _ := Marshal(nil, p)
		v, _, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(v.(*Described).Value.([]any)); n != arity[p.Descriptor()] {
			t.Errorf("%T has %d fields, want %d", p, n, arity[p.Descriptor()])
		}
	}
	b, _ := Marshal(nil, &Begin{})
	v, _, _ := Decode(b)
	if hm := v.(*Described).Value.([]any)[4]; hm != uint32(1<<32-1) {
		t.Errorf("begin's handle-max = %#v, want it explicit", hm)
	}
	b, _ = Marshal(nil, &Attach{Source: &Source{}, Target: &Target{}})
	v, _, _ = Decode(b)
	f := v.(*Described).Value.([]any)
	if n, m := len(f[5].(*Described).Value.([]any)), len(f[6].(*Described).Value.([]any)); n != 11 || m != 7 {
		t.Errorf("source has %d fields and target %d, want 11 and 7", n, m)
	}
}

// Ensure that every performative is written as go-amqp insists on
// reading it: the descriptor code as a smallulong (0x00 0x53 code), never
// the eight-byte ulong form the AMQP spec also allows.
func TestPerformativeDescriptorForm(t *testing.T) {
	for _, p := range performatives {
		b, err := Marshal(nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 3 || b[0] != 0x00 || b[1] != 0x53 || uint64(b[2]) != p.Descriptor() {
			t.Errorf("%T starts % x", p, b[:min(len(b), 10)])
		}
	}
	// The selector filter's descriptor needs all eight bytes.
	b, _ := Append(nil, Describe(0x468C00000004, "x"))
	if !bytes.HasPrefix(b, []byte{0x00, 0x80, 0, 0, 0x46, 0x8c, 0, 0, 0, 4}) {
		t.Errorf("the selector filter is written % x", b)
	}
}

// Ensure that the short forms peers write decode as the fields they mean:
// trailing fields left off, small uints, a single symbol for a multiple
// field.
func TestPerformativeShortForms(t *testing.T) {
	b, _ := Append(nil, Describe(DescAttach, []any{"n", uint8(1), true, nil, nil,
		Describe(DescSource, []any{"$cbs"}), nil, nil, nil, nil, nil, nil, Symbol("one-capability")}))
	p, _, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	a := p.(*Attach)
	if a.Handle != 1 || !a.Role || a.Source.Address != "$cbs" || a.Target != nil || !reflect.DeepEqual(a.DesiredCapabilities, []Symbol{"one-capability"}) {
		t.Errorf("attach = %#v", a)
	}
	if b, _ := Append(nil, Describe(DescOpen, []any{"c"})); true {
		if p, _, err := Unmarshal(b); err != nil || p.(*Open).MaxFrameSize != 0 {
			t.Errorf("open with one field: %#v, %v", p, err)
		}
	}
}

// Ensure that a performative with a field of the wrong type, an unknown
// descriptor or no list is an error.
func TestPerformativeMalformed(t *testing.T) {
	for name, v := range map[string]any{
		"handle is a string":    Describe(DescAttach, []any{"n", "x"}),
		"unknown descriptor":    Describe(0x99, []any{}),
		"not a list":            Describe(DescOpen, "c"),
		"not described":         []any{"c"},
		"source of wrong type":  Describe(DescAttach, []any{"n", uint32(0), false, nil, nil, "addr"}),
		"error of wrong type":   Describe(DescDetach, []any{uint32(0), true, "oops"}),
		"state unknown":         Describe(DescDisposition, []any{true, uint32(0), nil, true, Describe(0x30, []any{})}),
		"channel-max too large": Describe(DescOpen, []any{"c", nil, nil, uint32(70000)}),
	} {
		b, err := Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Unmarshal(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// Ensure that a message reads back as written, ids keeping their types.
func TestMessageRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000).UTC()
	msgs := []*Message{
		{Header: &Header{Durable: true, Priority: 4, TTL: 1000}, DeliveryAnnotations: map[any]any{Symbol("d"): int64(1)},
			MessageAnnotations: map[any]any{Symbol("x-opt-sequence-number"): int64(7), Symbol("x-opt-offset"): "42", Symbol("x-opt-enqueued-time"): at},
			Properties: &Properties{MessageID: UUID{1}, UserID: []byte("u"), To: "/devices/d/messages/devicebound", ReplyTo: "cbs",
				CorrelationID: uint64(3), ContentType: "application/json", ContentEncoding: "utf-8", AbsoluteExpiryTime: at, CreationTime: at, GroupSequence: u32(2)},
			ApplicationProperties: map[any]any{"status-code": int32(200)}, Data: [][]byte{[]byte("{}")}, Footer: map[any]any{Symbol("f"): "v"}},
		{Properties: &Properties{MessageID: "m"}, Value: "SharedAccessSignature sr=x", HasValue: true},
		{Sequence: [][]any{{"a", uint32(1)}}},
		{Data: [][]byte{[]byte("a"), []byte("b")}},
	}
	for _, m := range msgs {
		b, err := m.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalMessage(b)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("round trip:\n got %#v, %v\nwant %#v", got, err, m)
		}
	}
	if body := msgs[3].Body(); string(body) != "ab" {
		t.Errorf("Body() of two data sections = %q", body)
	}
	if body := msgs[1].Body(); string(body) != "SharedAccessSignature sr=x" {
		t.Errorf("Body() of a string value = %q", body)
	}
}

// FuzzUnmarshal checks that no frame body makes the performative or
// message decoders panic, and that what decodes encodes and decodes to the
// same value.
func FuzzUnmarshal(f *testing.F) {
	for _, p := range performatives {
		b, _ := Marshal(nil, p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = UnmarshalMessage(b)
		p, _, err := Unmarshal(b)
		if err != nil {
			return
		}
		again, err := Marshal(nil, p)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", p, err)
		}
		q, _, err := Unmarshal(again)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("re-encoded %#v decodes to %#v, %v", p, q, err)
		}
	})
}
