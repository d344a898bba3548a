package amqp

import "fmt"

// Source is a link's source terminus (part 3.5.3). Filter holds the
// filter set: Event Hubs receivers put their position there as a
// described selector string (next-wave-protocols §1.5).
type Source struct {
	Address               string
	Durable               uint32
	ExpiryPolicy          Symbol
	Timeout               uint32
	Dynamic               bool
	DynamicNodeProperties map[any]any
	DistributionMode      Symbol
	Filter                map[any]any
	DefaultOutcome        DeliveryState
	Outcomes              []Symbol
	Capabilities          []Symbol
}

// Target is a link's target terminus (part 3.5.4).
type Target struct {
	Address               string
	Durable               uint32
	ExpiryPolicy          Symbol
	Timeout               uint32
	Dynamic               bool
	DynamicNodeProperties map[any]any
	Capabilities          []Symbol
}

func optSymbol(s Symbol) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Source) described() *Described {
	return Describe(DescSource, []any{optString(s.Address), s.Durable, optSymbol(s.ExpiryPolicy), s.Timeout,
		s.Dynamic, optMap(s.DynamicNodeProperties), optSymbol(s.DistributionMode), optMap(s.Filter),
		stateValue(s.DefaultOutcome), optSymbols(s.Outcomes), optSymbols(s.Capabilities)})
}

func (t *Target) described() *Described {
	return Describe(DescTarget, []any{optString(t.Address), t.Durable, optSymbol(t.ExpiryPolicy), t.Timeout,
		t.Dynamic, optMap(t.DynamicNodeProperties), optSymbols(t.Capabilities)})
}

func terminusFields(v any, code uint64, name string) ([]any, error) {
	d, ok := v.(*Described)
	if !ok || d.Code() != code {
		return nil, fmt.Errorf("a %s field of %T", name, v)
	}
	f, ok := d.Value.([]any)
	if !ok {
		return nil, fmt.Errorf("a %s that is not a list", name)
	}
	return f, nil
}

func decodeSource(v any) (*Source, error) {
	f, err := terminusFields(v, DescSource, "source")
	if err != nil {
		return nil, err
	}
	r := &fieldReader{f: f}
	s := &Source{Address: r.string(), Durable: r.uint32(0), ExpiryPolicy: r.symbol(), Timeout: r.uint32(0),
		Dynamic: r.bool(), DynamicNodeProperties: r.fieldMap(), DistributionMode: r.symbol(), Filter: r.fieldMap(),
		DefaultOutcome: r.state(), Outcomes: r.symbols(), Capabilities: r.symbols()}
	return s, r.err
}

func decodeTarget(v any) (*Target, error) {
	f, err := terminusFields(v, DescTarget, "target")
	if err != nil {
		return nil, err
	}
	r := &fieldReader{f: f}
	t := &Target{Address: r.string(), Durable: r.uint32(0), ExpiryPolicy: r.symbol(), Timeout: r.uint32(0),
		Dynamic: r.bool(), DynamicNodeProperties: r.fieldMap(), Capabilities: r.symbols()}
	return t, r.err
}

// A DeliveryState is the state or outcome of a delivery (part 3.4):
// *Accepted, *Rejected, *Released, *Modified or *Received.
type DeliveryState interface {
	stateDescribed() *Described
}

// Accepted is the outcome of a delivery the receiver took (part 3.4.2).
type Accepted struct{}

// Rejected is the outcome of a delivery the receiver refused, with why
// (part 3.4.3).
type Rejected struct{ Error *Error }

// Released is the outcome of a delivery the receiver did not process
// (part 3.4.4).
type Released struct{}

// Modified is the outcome of a delivery to be retried elsewhere or later
// (part 3.4.5).
type Modified struct {
	DeliveryFailed     bool
	UndeliverableHere  bool
	MessageAnnotations map[any]any
}

// Received is the state of a partly received delivery (part 3.4.1).
type Received struct {
	SectionNumber uint32
	SectionOffset uint64
}

// Descriptors of the delivery states (part 3.4).
const (
	DescReceived = 0x23
	DescReleased = 0x26
	DescModified = 0x27
)

func (*Accepted) stateDescribed() *Described { return Describe(DescAccepted, []any{}) }
func (r *Rejected) stateDescribed() *Described {
	return Describe(DescRejected, []any{optError(r.Error)})
}
func (*Released) stateDescribed() *Described { return Describe(DescReleased, []any{}) }
func (m *Modified) stateDescribed() *Described {
	return Describe(DescModified, []any{m.DeliveryFailed, m.UndeliverableHere, optMap(m.MessageAnnotations)})
}
func (r *Received) stateDescribed() *Described {
	return Describe(DescReceived, []any{r.SectionNumber, r.SectionOffset})
}

func stateValue(s DeliveryState) any {
	if s == nil {
		return nil
	}
	return s.stateDescribed()
}

func decodeState(v any) (DeliveryState, error) {
	d, ok := v.(*Described)
	if !ok {
		return nil, fmt.Errorf("a delivery state of %T", v)
	}
	f, _ := d.Value.([]any)
	r := &fieldReader{f: f}
	var s DeliveryState
	switch d.Code() {
	case DescAccepted:
		s = &Accepted{}
	case DescRejected:
		s = &Rejected{Error: r.error()}
	case DescReleased:
		s = &Released{}
	case DescModified:
		s = &Modified{DeliveryFailed: r.bool(), UndeliverableHere: r.bool(), MessageAnnotations: r.fieldMap()}
	case DescReceived:
		s = &Received{SectionNumber: r.uint32(0), SectionOffset: r.uint64()}
	default:
		return nil, fmt.Errorf("unknown delivery state %v", d.Descriptor)
	}
	return s, r.err
}
