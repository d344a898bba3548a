package amqp

import (
	"errors"
	"fmt"
	"time"
)

// Descriptors of the message sections (part 3.2).
const (
	DescHeader              = 0x70
	DescDeliveryAnnotations = 0x71
	DescMessageAnnotations  = 0x72
	DescSequence            = 0x76
	DescFooter              = 0x78
)

// Message is an AMQP message, its sections in the order of part 3.2. The
// body is the Data sections, an amqp-value (HasValue) or amqp-sequence
// sections. Annotation maps have symbol keys; application properties
// string keys.
type Message struct {
	Header                *Header
	DeliveryAnnotations   map[any]any
	MessageAnnotations    map[any]any
	Properties            *Properties
	ApplicationProperties map[any]any
	Data                  [][]byte
	Value                 any
	HasValue              bool
	Sequence              [][]any
	Footer                map[any]any
}

// Header is a message's transport header (part 3.2.1).
type Header struct {
	Durable       bool
	Priority      uint8 // 0 is sent as the default, 4
	TTL           uint32
	FirstAcquirer bool
	DeliveryCount uint32
}

// Properties is a message's immutable properties section (part 3.2.4).
// MessageID and CorrelationID keep the type the sender gave them: a
// string, a UUID, a ulong or binary; a reply carries its request's
// message id in CorrelationID with the same type (next-wave-protocols §0).
type Properties struct {
	MessageID          any
	UserID             []byte
	To                 string
	Subject            string
	ReplyTo            string
	CorrelationID      any
	ContentType        Symbol
	ContentEncoding    Symbol
	AbsoluteExpiryTime time.Time
	CreationTime       time.Time
	GroupID            string
	GroupSequence      *uint32
	ReplyToGroupID     string
}

func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func (h *Header) described() *Described {
	p := h.Priority
	if p == 0 {
		p = 4
	}
	var ttl any
	if h.TTL != 0 {
		ttl = h.TTL
	}
	return Describe(DescHeader, []any{h.Durable, p, ttl, h.FirstAcquirer, h.DeliveryCount})
}

func (p *Properties) described() *Described {
	return Describe(DescProperties, []any{p.MessageID, optBytes(p.UserID), optString(p.To), optString(p.Subject),
		optString(p.ReplyTo), p.CorrelationID, optSymbol(p.ContentType), optSymbol(p.ContentEncoding),
		optTime(p.AbsoluteExpiryTime), optTime(p.CreationTime), optString(p.GroupID), optU32(p.GroupSequence),
		optString(p.ReplyToGroupID)})
}

// Marshal appends the encoding of m's sections to b.
func (m *Message) Marshal(b []byte) ([]byte, error) {
	var sections []*Described
	if m.Header != nil {
		sections = append(sections, m.Header.described())
	}
	if m.DeliveryAnnotations != nil {
		sections = append(sections, Describe(DescDeliveryAnnotations, m.DeliveryAnnotations))
	}
	if m.MessageAnnotations != nil {
		sections = append(sections, Describe(DescMessageAnnotations, m.MessageAnnotations))
	}
	if m.Properties != nil {
		sections = append(sections, m.Properties.described())
	}
	if m.ApplicationProperties != nil {
		sections = append(sections, Describe(DescAppProperties, m.ApplicationProperties))
	}
	for _, d := range m.Data {
		if d == nil {
			d = []byte{}
		}
		sections = append(sections, Describe(DescData, d))
	}
	if m.HasValue {
		sections = append(sections, Describe(DescValue, m.Value))
	}
	for _, s := range m.Sequence {
		sections = append(sections, Describe(DescSequence, s))
	}
	if m.Footer != nil {
		sections = append(sections, Describe(DescFooter, m.Footer))
	}
	for _, s := range sections {
		var err error
		if b, err = Append(b, s); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// UnmarshalMessage decodes the bytes of a complete delivery.
func UnmarshalMessage(b []byte) (*Message, error) {
	m := &Message{}
	for len(b) > 0 {
		v, rest, err := Decode(b)
		if err != nil {
			return nil, err
		}
		b = rest
		d, ok := v.(*Described)
		if !ok {
			return nil, errors.New("amqp: a message section without a descriptor")
		}
		if err := m.section(d); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Message) section(d *Described) error {
	asMap := func() (map[any]any, error) {
		if d.Value == nil {
			return map[any]any{}, nil
		}
		mp, ok := d.Value.(map[any]any)
		if !ok {
			return nil, fmt.Errorf("amqp: section %#x is %T, not a map", d.Code(), d.Value)
		}
		return mp, nil
	}
	var err error
	switch d.Code() {
	case DescHeader:
		f, _ := d.Value.([]any)
		r := &fieldReader{f: f}
		m.Header = &Header{Durable: r.bool()}
		if p := r.uint8p(); p != nil {
			m.Header.Priority = *p
		}
		m.Header.TTL, m.Header.FirstAcquirer, m.Header.DeliveryCount = r.uint32(0), r.bool(), r.uint32(0)
		err = r.err
	case DescDeliveryAnnotations:
		m.DeliveryAnnotations, err = asMap()
	case DescMessageAnnotations:
		m.MessageAnnotations, err = asMap()
	case DescProperties:
		m.Properties, err = decodeProperties(d.Value)
	case DescAppProperties:
		m.ApplicationProperties, err = asMap()
	case DescData:
		data, ok := d.Value.([]byte)
		if !ok {
			return fmt.Errorf("amqp: a data section of %T", d.Value)
		}
		m.Data = append(m.Data, data)
	case DescValue:
		m.Value, m.HasValue = d.Value, true
	case DescSequence:
		s, _ := d.Value.([]any)
		m.Sequence = append(m.Sequence, s)
	case DescFooter:
		m.Footer, err = asMap()
	default:
		return fmt.Errorf("amqp: unknown message section %v", d.Descriptor)
	}
	return err
}

func decodeProperties(v any) (*Properties, error) {
	f, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("amqp: a properties section of %T", v)
	}
	r := &fieldReader{f: f}
	p := &Properties{MessageID: r.next(), UserID: r.bytes(), To: r.string(), Subject: r.string(),
		ReplyTo: r.string(), CorrelationID: r.next(), ContentType: r.symbol(), ContentEncoding: r.symbol()}
	p.AbsoluteExpiryTime = r.time()
	p.CreationTime = r.time()
	p.GroupID = r.string()
	p.GroupSequence = r.uint32p()
	p.ReplyToGroupID = r.string()
	return p, r.err
}

func (r *fieldReader) time() time.Time {
	v := r.next()
	if v == nil {
		return time.Time{}
	}
	t, ok := v.(time.Time)
	if !ok {
		r.fail("a timestamp", v)
	}
	return t
}

// Body returns the message's payload: its Data sections joined, or a
// string or binary amqp-value.
func (m *Message) Body() []byte {
	if len(m.Data) == 1 {
		return m.Data[0]
	}
	if len(m.Data) > 1 {
		var b []byte
		for _, d := range m.Data {
			b = append(b, d...)
		}
		return b
	}
	switch v := m.Value.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

// AppProperty returns the application property name as a string or
// symbol, or "".
func (m *Message) AppProperty(name string) string {
	return AsString(m.ApplicationProperties[name])
}
