// Package hubtest gives the emulator's package tests a hub on a real
// bbolt file in a temporary directory, closed when the test ends.
package hubtest

import (
	"log/slog"
	"path/filepath"
	"testing"

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
