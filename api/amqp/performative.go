package amqp

import (
	"errors"
	"fmt"
)

// A Performative is the body of a frame: one of the nine of AMQP 1.0 part
// 2.7 or the SASL frames of part 5.3.3. Each is a described list; Marshal
// writes every field position the spec defines, trailing nulls included,
// because the Python Event Hubs client (pyamqp) indexes the list and
// refuses shorter ones (next-wave-protocols §0).
type Performative interface {
	// Descriptor is the performative's numeric descriptor.
	Descriptor() uint64
	fields() []any
	decode(f []any) error
}

// Roles of a link end (part 2.8.1): a sender or a receiver.
const (
	RoleSender   = false
	RoleReceiver = true
)

// Settlement modes (part 2.8.2 and 2.8.3).
const (
	SndUnsettled uint8 = 0
	SndSettled   uint8 = 1
	SndMixed     uint8 = 2
	RcvFirst     uint8 = 0
	RcvSecond    uint8 = 1
)

// Open starts a connection (part 2.7.1).
type Open struct {
	ContainerID         string
	Hostname            string
	MaxFrameSize        uint32 // 0: the spec's default, no limit
	ChannelMax          uint16 // 0: the spec's default, 65535
	IdleTimeout         uint32 // milliseconds; 0: none
	OfferedCapabilities []Symbol
	DesiredCapabilities []Symbol
	Properties          map[any]any
}

// Begin starts a session (part 2.7.2). RemoteChannel is set when the
// frame answers a begin of the peer.
type Begin struct {
	RemoteChannel       *uint16
	NextOutgoingID      uint32
	IncomingWindow      uint32
	OutgoingWindow      uint32
	HandleMax           uint32 // 0 is sent as the spec's default, 2^32-1
	OfferedCapabilities []Symbol
	DesiredCapabilities []Symbol
	Properties          map[any]any
}

// Attach attaches a link (part 2.7.3). A nil Source or Target is absent:
// that is how a refused link is answered.
type Attach struct {
	Name                 string
	Handle               uint32
	Role                 bool // RoleSender or RoleReceiver
	SndSettleMode        *uint8
	RcvSettleMode        *uint8
	Source               *Source
	Target               *Target
	Unsettled            map[any]any
	IncompleteUnsettled  bool
	InitialDeliveryCount *uint32 // a sender's; absent on a receiver's attach
	MaxMessageSize       uint64  // 0: no limit
	OfferedCapabilities  []Symbol
	DesiredCapabilities  []Symbol
	Properties           map[any]any
}

// Flow updates session windows and, with Handle set, a link's credit
// (part 2.7.4).
type Flow struct {
	NextIncomingID *uint32
	IncomingWindow uint32
	NextOutgoingID uint32
	OutgoingWindow uint32
	Handle         *uint32
	DeliveryCount  *uint32
	LinkCredit     *uint32
	Available      *uint32
	Drain          bool
	Echo           bool
	Properties     map[any]any
}

// Transfer carries a message, or part of one, on a link (part 2.7.5).
// The continuation frames of a multi-frame delivery leave DeliveryID and
// DeliveryTag unset.
type Transfer struct {
	Handle        uint32
	DeliveryID    *uint32
	DeliveryTag   []byte
	MessageFormat *uint32
	Settled       bool
	More          bool
	RcvSettleMode *uint8
	State         DeliveryState
	Resume        bool
	Aborted       bool
	Batchable     bool
}

// Disposition settles or updates deliveries First to Last (part 2.7.6).
type Disposition struct {
	Role      bool
	First     uint32
	Last      *uint32
	Settled   bool
	State     DeliveryState
	Batchable bool
}

// Detach detaches a link; Closed ends it (part 2.7.7).
type Detach struct {
	Handle uint32
	Closed bool
	Error  *Error
}

// End ends a session (part 2.7.8).
type End struct{ Error *Error }

// Close closes a connection (part 2.7.9).
type Close struct{ Error *Error }

// SASLMechanisms lists the mechanisms a server offers (part 5.3.3.1).
type SASLMechanisms struct{ Mechanisms []Symbol }

// SASLInit is the client's choice of mechanism (part 5.3.3.2). For PLAIN
// the initial response is "\0user\0password"; Event Hubs clients send
// ANONYMOUS (next-wave-protocols §0).
type SASLInit struct {
	Mechanism       Symbol
	InitialResponse []byte
	Hostname        string
}

// SASLOutcome ends SASL (part 5.3.3.6); Code 0 is ok, 1 is auth.
type SASLOutcome struct {
	Code           uint8
	AdditionalData []byte
}

// SASL outcome codes (part 5.3.3.6).
const (
	SASLOK   uint8 = 0
	SASLAuth uint8 = 1
)

// Error is an AMQP error (part 2.8.14).
type Error struct {
	Condition   Symbol
	Description string
	Info        map[any]any
}

// Error implements error.
func (e *Error) Error() string {
	if e.Description == "" {
		return string(e.Condition)
	}
	return string(e.Condition) + ": " + e.Description
}

// Errorf returns an error with condition and a formatted description.
func Errorf(condition Symbol, format string, args ...any) *Error {
	return &Error{Condition: condition, Description: fmt.Sprintf(format, args...)}
}

// Descriptors of the performatives.
func (*Open) Descriptor() uint64           { return DescOpen }
func (*Begin) Descriptor() uint64          { return DescBegin }
func (*Attach) Descriptor() uint64         { return DescAttach }
func (*Flow) Descriptor() uint64           { return DescFlow }
func (*Transfer) Descriptor() uint64       { return DescTransfer }
func (*Disposition) Descriptor() uint64    { return DescDisposition }
func (*Detach) Descriptor() uint64         { return DescDetach }
func (*End) Descriptor() uint64            { return DescEnd }
func (*Close) Descriptor() uint64          { return DescClose }
func (*SASLMechanisms) Descriptor() uint64 { return DescSASLMechanisms }
func (*SASLInit) Descriptor() uint64       { return DescSASLInit }
func (*SASLOutcome) Descriptor() uint64    { return DescSASLOutcome }

// newPerformative is the catalogue: the empty performative of each
// descriptor.
func newPerformative(code uint64) Performative {
	switch code {
	case DescOpen:
		return &Open{}
	case DescBegin:
		return &Begin{}
	case DescAttach:
		return &Attach{}
	case DescFlow:
		return &Flow{}
	case DescTransfer:
		return &Transfer{}
	case DescDisposition:
		return &Disposition{}
	case DescDetach:
		return &Detach{}
	case DescEnd:
		return &End{}
	case DescClose:
		return &Close{}
	case DescSASLMechanisms:
		return &SASLMechanisms{}
	case DescSASLInit:
		return &SASLInit{}
	case DescSASLOutcome:
		return &SASLOutcome{}
	}
	return nil
}

// Marshal appends the encoding of p to b.
func Marshal(b []byte, p Performative) ([]byte, error) {
	return Append(b, Describe(p.Descriptor(), p.fields()))
}

// Unmarshal reads the performative at the start of a frame body and
// returns it with the payload that follows (a transfer's message bytes).
func Unmarshal(body []byte) (Performative, []byte, error) {
	v, payload, err := Decode(body)
	if err != nil {
		return nil, nil, err
	}
	d, ok := v.(*Described)
	if !ok {
		return nil, nil, errors.New("amqp: a frame body without a performative")
	}
	f, ok := d.Value.([]any)
	if !ok {
		return nil, nil, errors.New("amqp: a performative that is not a list")
	}
	p := newPerformative(d.Code())
	if p == nil {
		return nil, nil, fmt.Errorf("amqp: unknown performative %v", d.Descriptor)
	}
	if err := p.decode(f); err != nil {
		return nil, nil, fmt.Errorf("amqp: %T: %w", p, err)
	}
	return p, payload, nil
}

// optional encodes the absent values of a field as null.
func optU32(p *uint32) any {
	if p == nil {
		return nil
	}
	return *p
}

func optU16(p *uint16) any {
	if p == nil {
		return nil
	}
	return *p
}

func optU8(p *uint8) any {
	if p == nil {
		return nil
	}
	return *p
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func optBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func optSymbols(s []Symbol) any {
	if s == nil {
		return nil
	}
	return s
}

func optMap(m map[any]any) any {
	if m == nil {
		return nil
	}
	return m
}

func optError(e *Error) any {
	if e == nil {
		return nil
	}
	return e.described()
}

func (e *Error) described() *Described {
	return Describe(DescError, []any{e.Condition, optString(e.Description), optMap(e.Info)})
}

func (o *Open) fields() []any {
	var mf, cm, idle any
	if o.MaxFrameSize != 0 {
		mf = o.MaxFrameSize
	}
	if o.ChannelMax != 0 {
		cm = o.ChannelMax
	}
	if o.IdleTimeout != 0 {
		idle = o.IdleTimeout
	}
	return []any{o.ContainerID, optString(o.Hostname), mf, cm, idle, nil, nil,
		optSymbols(o.OfferedCapabilities), optSymbols(o.DesiredCapabilities), optMap(o.Properties)}
}

func (b *Begin) fields() []any {
	hm := b.HandleMax
	if hm == 0 {
		hm = 1<<32 - 1
	}
	return []any{optU16(b.RemoteChannel), b.NextOutgoingID, b.IncomingWindow, b.OutgoingWindow, hm,
		optSymbols(b.OfferedCapabilities), optSymbols(b.DesiredCapabilities), optMap(b.Properties)}
}

func (a *Attach) fields() []any {
	var src, tgt, mms any
	if a.Source != nil {
		src = a.Source.described()
	}
	if a.Target != nil {
		tgt = a.Target.described()
	}
	if a.MaxMessageSize != 0 {
		mms = a.MaxMessageSize
	}
	return []any{a.Name, a.Handle, a.Role, optU8(a.SndSettleMode), optU8(a.RcvSettleMode), src, tgt,
		optMap(a.Unsettled), a.IncompleteUnsettled, optU32(a.InitialDeliveryCount), mms,
		optSymbols(a.OfferedCapabilities), optSymbols(a.DesiredCapabilities), optMap(a.Properties)}
}

func (f *Flow) fields() []any {
	return []any{optU32(f.NextIncomingID), f.IncomingWindow, f.NextOutgoingID, f.OutgoingWindow,
		optU32(f.Handle), optU32(f.DeliveryCount), optU32(f.LinkCredit), optU32(f.Available),
		f.Drain, f.Echo, optMap(f.Properties)}
}

func (t *Transfer) fields() []any {
	return []any{t.Handle, optU32(t.DeliveryID), optBytes(t.DeliveryTag), optU32(t.MessageFormat),
		t.Settled, t.More, optU8(t.RcvSettleMode), stateValue(t.State), t.Resume, t.Aborted, t.Batchable}
}

func (d *Disposition) fields() []any {
	return []any{d.Role, d.First, optU32(d.Last), d.Settled, stateValue(d.State), d.Batchable}
}

func (d *Detach) fields() []any { return []any{d.Handle, d.Closed, optError(d.Error)} }
func (e *End) fields() []any    { return []any{optError(e.Error)} }
func (c *Close) fields() []any  { return []any{optError(c.Error)} }

func (m *SASLMechanisms) fields() []any { return []any{m.Mechanisms} }
func (s *SASLInit) fields() []any {
	return []any{s.Mechanism, optBytes(s.InitialResponse), optString(s.Hostname)}
}
func (s *SASLOutcome) fields() []any { return []any{s.Code, optBytes(s.AdditionalData)} }

// Decoding. A field of the wrong type is an error; an absent one takes
// its default.

// fieldReader reads the fields of a described list in order and keeps
// the first error.
type fieldReader struct {
	f   []any
	i   int
	err error
}

func (r *fieldReader) next() any {
	v := Field(r.f, r.i)
	r.i++
	return v
}

func (r *fieldReader) fail(want string, v any) {
	if r.err == nil {
		r.err = fmt.Errorf("field %d is %T, not %s", r.i-1, v, want)
	}
}

func (r *fieldReader) uint32p() *uint32 {
	v := r.next()
	if v == nil {
		return nil
	}
	n, ok := AsUint(v)
	if !ok || n > 1<<32-1 {
		r.fail("a uint", v)
		return nil
	}
	u := uint32(n)
	return &u
}

func (r *fieldReader) uint32(def uint32) uint32 {
	if p := r.uint32p(); p != nil {
		return *p
	}
	return def
}

func (r *fieldReader) uint64() uint64 {
	v := r.next()
	if v == nil {
		return 0
	}
	n, ok := AsUint(v)
	if !ok {
		r.fail("a ulong", v)
	}
	return n
}

func (r *fieldReader) uint16p() *uint16 {
	p := r.uint32p()
	if p == nil {
		return nil
	}
	if *p > 0xffff {
		r.fail("a ushort", *p)
		return nil
	}
	u := uint16(*p)
	return &u
}

func (r *fieldReader) uint8p() *uint8 {
	p := r.uint32p()
	if p == nil {
		return nil
	}
	if *p > 0xff {
		r.fail("a ubyte", *p)
		return nil
	}
	u := uint8(*p)
	return &u
}

func (r *fieldReader) bool() bool {
	v := r.next()
	if v == nil {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		r.fail("a boolean", v)
	}
	return b
}

func (r *fieldReader) string() string {
	v := r.next()
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case Symbol:
		return string(x)
	}
	r.fail("a string", v)
	return ""
}

func (r *fieldReader) symbol() Symbol { return Symbol(r.string()) }

func (r *fieldReader) bytes() []byte {
	v := r.next()
	if v == nil {
		return nil
	}
	b, ok := v.([]byte)
	if !ok {
		r.fail("binary", v)
	}
	return b
}

// symbols reads a multiple symbol field: one symbol or an array of them.
func (r *fieldReader) symbols() []Symbol {
	v := r.next()
	switch x := v.(type) {
	case nil:
		return nil
	case Symbol:
		return []Symbol{x}
	case []any:
		out := make([]Symbol, 0, len(x))
		for _, s := range x {
			sym, ok := s.(Symbol)
			if !ok {
				r.fail("an array of symbols", v)
				return nil
			}
			out = append(out, sym)
		}
		return out
	}
	r.fail("symbols", v)
	return nil
}

func (r *fieldReader) fieldMap() map[any]any {
	v := r.next()
	if v == nil {
		return nil
	}
	m, ok := v.(map[any]any)
	if !ok {
		r.fail("a map", v)
	}
	return m
}

func (r *fieldReader) error() *Error {
	v := r.next()
	if v == nil {
		return nil
	}
	e, err := decodeError(v)
	if err != nil && r.err == nil {
		r.err = err
	}
	return e
}

func (r *fieldReader) state() DeliveryState {
	v := r.next()
	if v == nil {
		return nil
	}
	s, err := decodeState(v)
	if err != nil && r.err == nil {
		r.err = err
	}
	return s
}

func decodeError(v any) (*Error, error) {
	d, ok := v.(*Described)
	if !ok || d.Code() != DescError {
		return nil, fmt.Errorf("an error field of %T", v)
	}
	f, _ := d.Value.([]any)
	r := &fieldReader{f: f}
	e := &Error{Condition: r.symbol(), Description: r.string(), Info: r.fieldMap()}
	return e, r.err
}

func (o *Open) decode(f []any) error {
	r := &fieldReader{f: f}
	o.ContainerID = r.string()
	o.Hostname = r.string()
	o.MaxFrameSize = r.uint32(0)
	if p := r.uint16p(); p != nil {
		o.ChannelMax = *p
	}
	o.IdleTimeout = r.uint32(0)
	r.next() // outgoing-locales
	r.next() // incoming-locales
	o.OfferedCapabilities = r.symbols()
	o.DesiredCapabilities = r.symbols()
	o.Properties = r.fieldMap()
	return r.err
}

func (b *Begin) decode(f []any) error {
	r := &fieldReader{f: f}
	b.RemoteChannel = r.uint16p()
	b.NextOutgoingID = r.uint32(0)
	b.IncomingWindow = r.uint32(0)
	b.OutgoingWindow = r.uint32(0)
	b.HandleMax = r.uint32(1<<32 - 1)
	b.OfferedCapabilities = r.symbols()
	b.DesiredCapabilities = r.symbols()
	b.Properties = r.fieldMap()
	return r.err
}

func (a *Attach) decode(f []any) error {
	r := &fieldReader{f: f}
	a.Name = r.string()
	a.Handle = r.uint32(0)
	a.Role = r.bool()
	a.SndSettleMode = r.uint8p()
	a.RcvSettleMode = r.uint8p()
	if v := r.next(); v != nil {
		s, err := decodeSource(v)
		if err != nil {
			return err
		}
		a.Source = s
	}
	if v := r.next(); v != nil {
		t, err := decodeTarget(v)
		if err != nil {
			return err
		}
		a.Target = t
	}
	a.Unsettled = r.fieldMap()
	a.IncompleteUnsettled = r.bool()
	a.InitialDeliveryCount = r.uint32p()
	a.MaxMessageSize = r.uint64()
	a.OfferedCapabilities = r.symbols()
	a.DesiredCapabilities = r.symbols()
	a.Properties = r.fieldMap()
	return r.err
}

func (fl *Flow) decode(f []any) error {
	r := &fieldReader{f: f}
	fl.NextIncomingID = r.uint32p()
	fl.IncomingWindow = r.uint32(0)
	fl.NextOutgoingID = r.uint32(0)
	fl.OutgoingWindow = r.uint32(0)
	fl.Handle = r.uint32p()
	fl.DeliveryCount = r.uint32p()
	fl.LinkCredit = r.uint32p()
	fl.Available = r.uint32p()
	fl.Drain = r.bool()
	fl.Echo = r.bool()
	fl.Properties = r.fieldMap()
	return r.err
}

func (t *Transfer) decode(f []any) error {
	r := &fieldReader{f: f}
	t.Handle = r.uint32(0)
	t.DeliveryID = r.uint32p()
	t.DeliveryTag = r.bytes()
	t.MessageFormat = r.uint32p()
	t.Settled = r.bool()
	t.More = r.bool()
	t.RcvSettleMode = r.uint8p()
	t.State = r.state()
	t.Resume = r.bool()
	t.Aborted = r.bool()
	t.Batchable = r.bool()
	return r.err
}

func (d *Disposition) decode(f []any) error {
	r := &fieldReader{f: f}
	d.Role = r.bool()
	d.First = r.uint32(0)
	d.Last = r.uint32p()
	d.Settled = r.bool()
	d.State = r.state()
	d.Batchable = r.bool()
	return r.err
}

func (d *Detach) decode(f []any) error {
	r := &fieldReader{f: f}
	d.Handle = r.uint32(0)
	d.Closed = r.bool()
	d.Error = r.error()
	return r.err
}

func (e *End) decode(f []any) error {
	r := &fieldReader{f: f}
	e.Error = r.error()
	return r.err
}

func (c *Close) decode(f []any) error {
	r := &fieldReader{f: f}
	c.Error = r.error()
	return r.err
}

func (m *SASLMechanisms) decode(f []any) error {
	r := &fieldReader{f: f}
	m.Mechanisms = r.symbols()
	return r.err
}

func (s *SASLInit) decode(f []any) error {
	r := &fieldReader{f: f}
	s.Mechanism = r.symbol()
	s.InitialResponse = r.bytes()
	s.Hostname = r.string()
	return r.err
}

func (s *SASLOutcome) decode(f []any) error {
	r := &fieldReader{f: f}
	if p := r.uint8p(); p != nil {
		s.Code = *p
	}
	s.AdditionalData = r.bytes()
	return r.err
}
