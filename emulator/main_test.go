package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
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
