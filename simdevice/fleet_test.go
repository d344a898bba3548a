package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// logWatch is a log destination that signals when a line containing a
// text is written.
type logWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	waits map[string]chan struct{}
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for text, ch := range w.waits {
		if strings.Contains(w.buf.String(), text) {
			close(ch)
			delete(w.waits, text)
		}
	}
	return len(p), nil
}

// await waits for a line containing text.
func (w *logWatch) await(t *testing.T, text string) string {
	t.Helper()
	w.mu.Lock()
	ch := make(chan struct{})
	if strings.Contains(w.buf.String(), text) {
		close(ch)
	} else {
		w.waits[text] = ch
	}
	w.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		w.mu.Lock()
		defer w.mu.Unlock()
		t.Fatalf("no %q in the log:\n%s", text, w.buf.String())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(w.buf.String(), "\n") {
		if strings.Contains(line, text) {
			return line
		}
	}
	return ""
}

// Ensure that a fleet rides out an outage: the hub restarts and refuses
// connections for a second, the devices reconnect by themselves with
// backoff, and the fleet reports when the first went offline and how long
// until the last was back.
func TestFleetRecoversFromAnOutage(t *testing.T) {
	e := emulatortest.Start(t)
	w := &logWatch{waits: map[string]chan struct{}{}}
	log := slog.New(slog.NewTextHandler(w, nil))
	svcCS := e.ServiceString()
	cfg := config{service: svcCS.String(), gateway: e.DeviceString("x", "").GatewayHostName, count: 3, prefix: "fleet-", parallel: 3,
		summary: time.Hour, opts: iotdevice.Options{CAFile: e.CAFile(), Logger: slog.New(slog.DiscardHandler)},
		behaviour: behaviour{RebootDelay: time.Second, FirmwareVersion: "1.0.0"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runFleet(ctx, cfg, log, io.Discard) }()
	t.Cleanup(func() { cancel(); <-done })
	w.await(t, "fleet connected")
	svc := e.Service(t)
	if _, err := svc.AddFault(context.Background(), iothub.Fault{Kind: iothub.FaultRefuseConnects, Duration: iothub.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if f, err := svc.AddFault(context.Background(), iothub.Fault{Kind: iothub.FaultRestart}); err != nil || f.Hits != 3 {
		t.Fatalf("restart: %+v, %v", f, err)
	}
	w.await(t, "devices went offline")
	line := w.await(t, "all devices back online")
	t.Log(line)
	if !strings.Contains(line, "recovery=") || !strings.Contains(line, "of=3") {
		t.Fatalf("recovery report %q", line)
	}
}
