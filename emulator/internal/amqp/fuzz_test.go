package amqp

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// frameBytes encodes one AMQP frame for the fuzz seeds.
func frameBytes(code uint64, fields ...any) []byte {
	b, _ := wire.AppendFrame(nil, wire.FrameAMQP, 0, wire.Describe(code, fields), nil)
	return b
}

// FuzzConn feeds a connection arbitrary frames after the protocol header:
// whatever they hold, the connection must end without a panic.
func FuzzConn(f *testing.F) {
	st, err := bolt.Open(filepath.Join(f.TempDir(), "f.db"), bolt.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	h, err := hub.New(st, st, hub.Options{Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	var seed []byte
	for _, fr := range [][]byte{
		frameBytes(wire.DescOpen, "c"),
		frameBytes(wire.DescBegin, nil, uint32(0), uint32(10), uint32(10)),
		frameBytes(wire.DescAttach, "l", uint32(0), false, nil, nil, wire.Describe(wire.DescSource, []any{""}), wire.Describe(wire.DescTarget, []any{wire.C2DNode})),
		frameBytes(wire.DescTransfer, uint32(0), uint32(0), []byte{0}, uint32(0), false, true),
		frameBytes(wire.DescFlow, uint32(0), uint32(1), uint32(0), uint32(1), uint32(0), uint32(0), uint32(5)),
		frameBytes(wire.DescDetach, uint32(0), true),
		frameBytes(wire.DescEnd),
		frameBytes(wire.DescClose),
	} {
		seed = append(seed, fr...)
		f.Add(append([]byte(nil), seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(h, log)
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			s.ServeConn(server)
			close(done)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = client.Write([]byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0})
		_, _ = client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection did not end")
		}
		if n := s.panics.Load(); n > 0 {
			t.Fatalf("%d connection(s) panicked", n)
		}
	})
}
