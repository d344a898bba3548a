// Package cmdline is the command-line plumbing the three programs share:
// flags with environment-variable twins and structured loggers. It lives
// under api/ because api/ is the one tree all three programs import; it
// holds no IoT Hub knowledge.
package cmdline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Flags registers flags on a FlagSet, each with an environment-variable
// twin: the variable sets the default, the flag overrides it.
type Flags struct {
	*flag.FlagSet
	prefix string
	errs   []string
}

// NewFlags returns flags for program name whose variables start with prefix.
func NewFlags(name, prefix string) *Flags {
	return &Flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), prefix: prefix}
}

// EnvName is the environment variable of flag name: prefix + NAME_IN_CAPS.
func (f *Flags) EnvName(name string) string {
	return f.prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *Flags) env(name string) (string, bool) {
	return os.LookupEnv(f.EnvName(name))
}

func (f *Flags) usage(name, usage string) string {
	return usage + " (env " + f.EnvName(name) + ")"
}

// String registers a string flag.
func (f *Flags) String(name, def, usage string) *string {
	if v, ok := f.env(name); ok {
		def = v
	}
	return f.FlagSet.String(name, def, f.usage(name, usage))
}

// Secret registers a string flag whose environment twin's value is
// never printed as its default (connection strings and keys would show
// in -h output, terminals and CI logs).
func (f *Flags) Secret(name, usage string) *string {
	p := f.FlagSet.String(name, "", f.usage(name, usage))
	if v, ok := f.env(name); ok {
		*p = v
	}
	return p
}

// Bool registers a bool flag.
func (f *Flags) Bool(name string, def bool, usage string) *bool {
	if v, ok := f.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Sprintf("%s=%q is not a boolean", f.EnvName(name), v))
		}
		def = b
	}
	return f.FlagSet.Bool(name, def, f.usage(name, usage))
}

// Int registers an int flag.
func (f *Flags) Int(name string, def int, usage string) *int {
	if v, ok := f.env(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Sprintf("%s=%q is not an integer", f.EnvName(name), v))
		}
		def = n
	}
	return f.FlagSet.Int(name, def, f.usage(name, usage))
}

// Duration registers a duration flag.
func (f *Flags) Duration(name string, def time.Duration, usage string) *time.Duration {
	if v, ok := f.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Sprintf("%s=%q is not a duration", f.EnvName(name), v))
		}
		def = d
	}
	return f.FlagSet.Duration(name, def, f.usage(name, usage))
}

// Parse parses args and reports bad environment values too. A bad flag
// is a usage mistake (ErrUsage); the flag package has already printed it.
//
// Flags may follow the arguments, as in invoker query "SELECT ..." -output
// json: the arguments are gathered wherever they are (all after a "--"),
// and Args returns them in order.
func (f *Flags) Parse(args []string) error {
	if len(f.errs) > 0 {
		return fmt.Errorf("%w: %s", ErrUsage, strings.Join(f.errs, "; "))
	}
	var positional []string
	for {
		err := f.FlagSet.Parse(args)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			return fmt.Errorf("%w: %w", errFlagPrinted, err)
		}
		if err != nil {
			return err
		}
		rest := f.FlagSet.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return f.FlagSet.Parse(append([]string{"--"}, positional...))
}

// ErrUsage marks a usage mistake: Main exits with status 2.
var ErrUsage = errors.New("usage")

// errFlagPrinted marks a flag error the flag package already printed.
var errFlagPrinted = fmt.Errorf("%w: bad flag", ErrUsage)

// Main runs a program with a context that SIGINT and SIGTERM cancel and
// returns its exit status: 0 on success or -h, 2 for a usage mistake, 1
// for any other error, which it prints as "name: error".
func Main(name string, stderr io.Writer, run func(ctx context.Context) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlagPrinted):
		return 2
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(stderr, name+":", err)
		return 2
	}
	fmt.Fprintln(stderr, name+":", err)
	return 1
}

// LogFlags are the -log-level and -log-format flags.
type LogFlags struct{ level, format *string }

// LogFlags registers -log-level and -log-format.
func (f *Flags) LogFlags() LogFlags {
	return LogFlags{
		level:  f.String("log-level", "info", "debug, info, warn or error"),
		format: f.String("log-format", "text", "text or json"),
	}
}

// Logger returns the logger the flags ask for, writing to w; call it after
// Parse.
func (l LogFlags) Logger(w io.Writer) (*slog.Logger, error) { return Logger(w, *l.format, *l.level) }

// Logger returns a slog logger writing text or JSON at level to w.
func Logger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: use text or json", format)
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Version is the program's module version and commit, as the build
// recorded them ("(devel)" for a build from a work tree).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev != "" {
		v += " " + rev[:min(12, len(rev))] + modified
	}
	return v
}
