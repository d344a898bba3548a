package amqp

import (
	"log/slog"
	"testing"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hubtest"
)

// frameBytes encodes one AMQP frame for the fuzz seeds.
func frameBytes(p wire.Performative, payload []byte) []byte {
	b, _ := wire.AppendFrame(nil, 0, p, payload)
	return b
}

func ptr[T any](v T) *T { return &v }

// FuzzConn feeds a connection arbitrary frames after the protocol header:
// whatever they hold, the connection must end without a panic.
func FuzzConn(f *testing.F) {
	log := slog.New(slog.DiscardHandler)
	h := hubtest.New(f, hub.Options{})
	var seed []byte
	for _, fr := range [][]byte{
		frameBytes(&wire.Open{ContainerID: "c"}, nil),
		frameBytes(&wire.Begin{IncomingWindow: 10, OutgoingWindow: 10}, nil),
		frameBytes(&wire.Attach{Name: "l", Source: &wire.Source{}, Target: &wire.Target{Address: wire.C2DNode}}, nil),
		frameBytes(&wire.Transfer{DeliveryID: ptr(uint32(0)), DeliveryTag: []byte{0}, More: true}, []byte{0x00, 0x53, 0x75}),
		frameBytes(&wire.Attach{Name: "r", Handle: 1, Role: wire.RoleReceiver, Source: &wire.Source{Address: wire.FeedbackNode}}, nil),
		frameBytes(&wire.Flow{Handle: ptr(uint32(1)), DeliveryCount: ptr(uint32(0)), LinkCredit: ptr(uint32(5)), Drain: true}, nil),
		frameBytes(&wire.Detach{Closed: true}, nil),
		frameBytes(&wire.End{}, nil),
		frameBytes(&wire.Close{}, nil),
	} {
		seed = append(seed, fr...)
		f.Add(append([]byte(nil), seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(Config{Logger: log, Authorize: ServiceAuthorizer(h)})
		ServeService(s, h)
		feed(t, s, append([]byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}, data...))
	})
}

// feed writes data to a connection of s and closes it; the connection
// must end, without a panic, and leave no handshake counted.
func feed(t *testing.T, s *Server, data []byte) {
	hubtest.Feed(t, s.ServeConn, data, time.Second)
	if n := s.panics.Load(); n > 0 {
		t.Fatalf("%d connection(s) panicked", n)
	}
	if n := s.pending.Load(); n != 0 {
		t.Fatalf("%d handshakes still counted", n)
	}
}

// FuzzHandshake feeds a connection arbitrary first bytes, protocol
// headers and SASL frames included: whatever they hold, the connection
// ends without a panic and the engine's handshake count goes back to
// zero.
func FuzzHandshake(f *testing.F) {
	log := slog.New(slog.DiscardHandler)
	f.Add([]byte("AMQP\x00\x01\x00\x00"))
	f.Add([]byte("AMQP\x03\x01\x00\x00"))
	f.Add([]byte("AMQP\x03\x01\x00\x00\x00\x00\x00\x1a\x02\x01\x00\x00\x00\x53\x41\xc0\x0d\x02\xa3\x05PLAIN\xa0\x04\x00a\x00b"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("AMQP\x00\x01\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(Config{Logger: log, Authorize: func(string, string, string) (Claim, error) { return Claim{}, nil }})
		feed(t, s, data)
	})
}
