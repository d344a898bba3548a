package cmdline

import (
	"fmt"
	"io"
	"os"
)

// Progress writes the state of a long-running piece of work: on a
// terminal one line rewritten in place, elsewhere (CI logs, pipes) one
// line per change, so a log never grows a single endless line.
type Progress struct {
	w    io.Writer
	tty  bool
	last string
}

// NewProgress writes progress to w.
func NewProgress(w io.Writer) *Progress { return &Progress{w: w, tty: IsTerminal(w)} }

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Update shows line, if it differs from the last one.
func (p *Progress) Update(line string) {
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

// Done ends the progress line on a terminal.
func (p *Progress) Done() {
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
	p.last = ""
}
