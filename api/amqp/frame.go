package amqp

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frame types (AMQP 1.0 part 2, 2.3, and part 5, 5.3.1).
const (
	FrameAMQP = 0
	FrameSASL = 1
)

// Heartbeat is an empty frame: it keeps an idle connection open (part
// 2.4.5).
var Heartbeat = []byte{0, 0, 0, 8, 2, 0, 0, 0}

// Protocol headers (part 2.2 and 5.1): plain AMQP, and SASL first.
var (
	HeaderAMQP = []byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}
	HeaderSASL = []byte{'A', 'M', 'Q', 'P', 3, 1, 0, 0}
)

// AppendFrame appends one frame to b: the 8-byte header (size, a data
// offset of two words, type and channel), the performative and its
// payload. SASL performatives go in SASL frames.
func AppendFrame(b []byte, channel uint16, perf Performative, payload []byte) ([]byte, error) {
	typ := byte(FrameAMQP)
	if perf.Descriptor() >= DescSASLMechanisms && perf.Descriptor() <= DescSASLOutcome {
		typ = FrameSASL
	}
	start := len(b)
	b = append(b, 0, 0, 0, 0, 2, typ, 0, 0)
	binary.BigEndian.PutUint16(b[start+6:], channel)
	b, err := Marshal(b, perf)
	if err != nil {
		return nil, err
	}
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

// ReadFrame reads one frame of at most maxSize bytes and returns its
// type, channel and body (the performative and its payload; empty for a
// heartbeat).
func ReadFrame(r io.Reader, maxSize uint32) (typ byte, channel uint16, body []byte, err error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	size := binary.BigEndian.Uint32(h[:4])
	doff := int(h[4]) * 4
	if size < 8 || size > maxSize || doff < 8 || doff > int(size) {
		return 0, 0, nil, fmt.Errorf("amqp: bad frame: size %d, data offset %d", size, doff)
	}
	buf := make([]byte, size-8)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, 0, nil, err
	}
	return h[5], binary.BigEndian.Uint16(h[6:]), buf[doff-8:], nil
}
