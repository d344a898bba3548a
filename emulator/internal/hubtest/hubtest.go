// Package hubtest gives the emulator's package tests a hub on a real
// bbolt file in a temporary directory, closed when the test ends, and a
// way to feed a listener's connection arbitrary bytes.
package hubtest

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// New returns a hub on a new store (without fsync: these tests are not
// about durability) that logs nowhere unless opts says otherwise.
func New(tb testing.TB, opts hub.Options) *hub.Hub {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), "hub.db"), bolt.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := hub.New(st, st, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

// Feed writes data to a connection that serve serves (over net.Pipe),
// for at most writeFor (a server that stopped reading lets the write time
// out), closes it, and fails tb unless serve returns within five
// seconds: what the listeners' fuzz targets do with their first bytes.
func Feed(tb testing.TB, serve func(net.Conn), data []byte, writeFor time.Duration) {
	tb.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		serve(server)
		close(done)
	}()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	_ = client.SetWriteDeadline(time.Now().Add(writeFor))
	_, _ = client.Write(data)
	client.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		tb.Fatal("the connection did not end")
	}
}
