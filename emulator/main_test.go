package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Ensure that version answers without starting a server, and that a
// word the emulator does not know is a usage error, not a start.
func TestCommands(t *testing.T) {
	var out, errs bytes.Buffer
	for _, args := range [][]string{{"version"}, {"-version"}} {
		out.Reset()
		if err := run(context.Background(), args, &out, &errs); err != nil || !strings.HasPrefix(out.String(), "emulator ") {
			t.Errorf("%v: %q, %v", args, out.String(), err)
		}
	}
	if err := run(context.Background(), []string{"-data-dir", t.TempDir(), "verison"}, &out, &errs); !errors.Is(err, cmdline.ErrUsage) {
		t.Errorf("a typo: %v", err)
	}
}

// Ensure that emulator check says a sound store is sound and fails on a
// store that is not one, naming the problem.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errs bytes.Buffer
	if err := run(context.Background(), []string{"check", "-data-dir", dir}, &out, &errs); err == nil {
		t.Fatal("check of a directory without a store succeeded")
	}
	st, err := bolt.Open(filepath.Join(dir, server.StoreFile), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	out.Reset()
	if err := run(context.Background(), []string{"check", "-data-dir", dir}, &out, &errs); err != nil || !strings.Contains(out.String(), "sound, 0 identities") {
		t.Fatalf("check of a new store: %q, %v", out.String(), err)
	}
	if err := os.WriteFile(filepath.Join(dir, server.StoreFile), []byte("scribbled over"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"check", "-data-dir", dir}, &out, &errs); err == nil || !strings.Contains(out.String(), "not a sound emulator store") {
		t.Fatalf("check of a scribbled store: %q, %v", out.String(), err)
	}
}

// Ensure that the start-up line about serving loopback only is printed
// exactly when every listener is on a loopback address.
func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		addrs []string
		want  bool
	}{
		{[]string{"127.0.0.1:8883", "127.0.0.1:443", "[::1]:5671"}, true},
		{[]string{"127.0.0.1:8883", "127.0.0.1:443", ""}, true}, // AMQP off
		{[]string{"[::]:8883", "127.0.0.1:443"}, false},
		{[]string{"127.0.0.1:8883", "0.0.0.0:443"}, false},
		{[]string{"192.168.1.5:8883"}, false},
	}
	for _, tt := range tests {
		if got := loopbackOnly(tt.addrs...); got != tt.want {
			t.Errorf("loopbackOnly(%v) = %v, want %v", tt.addrs, got, tt.want)
		}
	}
}
