package cmdline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestEnvTwins(t *testing.T) {
	t.Setenv("X_DATA_DIR", "/from/env")
	t.Setenv("X_COUNT", "7")
	t.Setenv("X_WAIT", "2s")
	t.Setenv("X_LOUD", "true")
	f := NewFlags("x", "X_")
	dir := f.String("data-dir", "./data", "where")
	n := f.Int("count", 1, "how many")
	w := f.Duration("wait", time.Second, "how long")
	loud := f.Bool("loud", false, "noise")
	other := f.String("other", "def", "unset")
	if err := f.Parse([]string{"-count", "9"}); err != nil {
		t.Fatal(err)
	}
	if *dir != "/from/env" || *n != 9 || *w != 2*time.Second || !*loud || *other != "def" {
		t.Fatalf("got %q %d %v %v %q", *dir, *n, *w, *loud, *other)
	}
	t.Setenv("X_BAD", "many")
	g := NewFlags("x", "X_")
	g.Int("bad", 1, "")
	if err := g.Parse(nil); err == nil {
		t.Fatal("a bad environment value was accepted")
	}
	if got := SplitList(" a, ,b "); len(got) != 2 || got[1] != "b" {
		t.Fatalf("SplitList = %q", got)
	}
}

func TestMainStatus(t *testing.T) {
	bad := NewFlags("x", "X_")
	bad.SetOutput(io.Discard)
	flagErr := bad.Parse([]string{"-nope"})
	tests := []struct {
		err    error
		status int
		out    string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{flagErr, 2, ""},
		{fmt.Errorf("%w: -device is required", ErrUsage), 2, "x: usage: -device is required\n"},
		{errors.New("boom"), 1, "x: boom\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		if got := Main("x", &b, func(context.Context) error { return tt.err }); got != tt.status || b.String() != tt.out {
			t.Errorf("Main(%v) = %d %q, want %d %q", tt.err, got, b.String(), tt.status, tt.out)
		}
	}
}

// Ensure that progress written to something other than a terminal is one
// line per change, with no carriage returns.
func TestProgressNotATerminal(t *testing.T) {
	var b strings.Builder
	p := NewProgress(&b)
	for _, s := range []string{"1 of 3", "1 of 3", "2 of 3", "3 of 3"} {
		p.Update(s)
	}
	p.Done()
	if b.String() != "1 of 3\n2 of 3\n3 of 3\n" {
		t.Errorf("wrote %q", b.String())
	}
}

// Ensure that a secret flag takes its environment twin's value and never
// shows it as the default.
func TestSecretFlag(t *testing.T) {
	t.Setenv("X_TOKEN", "s3cret")
	f := NewFlags("x", "X_")
	tok := f.Secret("token", "a secret")
	var b strings.Builder
	f.SetOutput(&b)
	f.PrintDefaults()
	if *tok != "s3cret" || strings.Contains(b.String(), "s3cret") || !strings.Contains(b.String(), "X_TOKEN") {
		t.Errorf("value %q, help %q", *tok, b.String())
	}
}

// Ensure that flags may follow the arguments, that the arguments keep
// their order wherever they are, and that those after "--" are arguments
// even when they look like flags.
func TestFlagsAfterArguments(t *testing.T) {
	tests := []struct {
		args   []string
		output string
		rest   []string
	}{
		{[]string{"query", "SELECT * FROM devices", "-output", "json"}, "json", []string{"query", "SELECT * FROM devices"}},
		{[]string{"-output", "json", "show", "-id", "x"}, "json", []string{"show"}},
		{[]string{"a", "-output=json", "b"}, "json", []string{"a", "b"}},
		{[]string{"a", "--", "-output", "json"}, "text", []string{"a", "-output", "json"}},
		{nil, "text", nil},
	}
	for _, tt := range tests {
		f := NewFlags("x", "XA_")
		out := f.String("output", "text", "")
		f.String("id", "", "")
		if err := f.Parse(tt.args); err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if *out != tt.output || strings.Join(f.Args(), "|") != strings.Join(tt.rest, "|") {
			t.Errorf("%q: output %q, args %q; want %q, %q", tt.args, *out, f.Args(), tt.output, tt.rest)
		}
	}
}
