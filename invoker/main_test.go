package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// invoke runs the invoker in-process against e and returns its stdout.
func invoke(t *testing.T, ctx context.Context, e *emulatortest.Env, args ...string) (string, error) {
	t.Helper()
	t.Setenv("IOTHUB_CONNECTION_STRING", e.ServiceString().String())
	t.Setenv("IOTHUB_CA_FILE", e.CAFile())
	t.Setenv("IOTHUB_AMQP_ADDR", e.AMQPAddr())
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	if err != nil {
		return stdout.String(), fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}

// Ensure that help lists every command of the table, -h never prints the
// connection string's key, and an unknown command is a usage error.
func TestHelp(t *testing.T) {
	t.Setenv("IOTHUB_CONNECTION_STRING", "HostName=h;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0")
	for _, arg := range []string{"help", "-h", "--help"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{arg}, &out, &out); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		for _, c := range commands {
			if !strings.Contains(out.String(), "invoker "+c.name+" ") {
				t.Errorf("%s does not list %s:\n%s", arg, c.name, out.String())
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"device", "show", "-h"}, &out, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "c2VjcmV0") || !strings.Contains(out.String(), "IOTHUB_CONNECTION_STRING") {
		t.Errorf("-h prints:\n%s", out.String())
	}
	if err := run(context.Background(), []string{"frobnicate"}, &out, &out); !errors.Is(err, cmdline.ErrUsage) {
		t.Errorf("an unknown command: %v", err)
	}
}

// Ensure that monitor and messages read a device's telemetry through the
// Event Hubs-compatible endpoint, found by the hub's redirect or given,
// with its payload and properties.
func TestTelemetryCommands(t *testing.T) {
	e := emulatortest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := e.AddDevice(t, "sensor")
	other := e.AddDevice(t, "other")
	dev, odev := e.Dial(t, cs, iotdevice.Options{}), e.Dial(t, other, iotdevice.Options{})
	for i := range 3 {
		if err := dev.SendEvent(ctx, fmt.Appendf(nil, `{"t":%d}`, 20+i), topic.Properties{}.Set("unit", "C")); err != nil {
			t.Fatal(err)
		}
		if err := odev.SendEvent(ctx, []byte("not json"), nil); err != nil {
			t.Fatal(err)
		}
	}
	out, err := invoke(t, ctx, e, "messages", "-device", "sensor", "-count", "2", "-output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var msgs []message
	if err := json.Unmarshal([]byte(out), &msgs); err != nil || len(msgs) != 2 {
		t.Fatalf("messages: %v\n%s", err, out)
	}
	if p := msgs[1].Payload.(map[string]any); p["t"] != float64(22) || msgs[1].Origin != "sensor" || msgs[1].Application["unit"] != "C" {
		t.Errorf("the last message is %+v", msgs[1])
	}
	// monitor from the start, every device, with the endpoint given.
	eh, _ := e.EventHubConnectionString("service")
	out, err = invoke(t, ctx, e, "monitor", "-start", "earliest", "-count", "6", "-eventhub-connection-string", eh, "-connection-string", "")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, " sensor {\"t\":"); n != 3 || strings.Count(out, ` other "not json"`) != 3 {
		t.Errorf("monitor printed:\n%s", out)
	}
}

// Ensure that a blob name that would leave the download directory is
// refused before anything is fetched or written.
func TestDownloadStaysInItsDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"../escape.txt", "/etc/passwd", "dev/../../x", ""} {
		if _, err := download(context.Background(), nil, dir, name); err == nil {
			t.Errorf("blob name %q accepted", name)
		}
	}
}

// Ensure that invoker fault and tier drive the emulator: a fail fault
// added from the command line fails the call it names and is listed with
// its hit, and a tier set from it is shown with its refusals.
func TestFaultAndTierCommands(t *testing.T) {
	e := emulatortest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.AddDevice(t, "target")
	out, err := invoke(t, ctx, e, "fault", "add", "-kind", "fail", "-operation", "twinRead", "-count", "1", "-error-code", "ServiceUnavailable")
	if err != nil || !strings.Contains(out, "f-1 fail twinRead with ServiceUnavailable on every device: 0 hits, active") {
		t.Fatalf("fault add: %v\n%s", err, out)
	}
	if _, err := invoke(t, ctx, e, "twin", "show", "-device", "target"); err == nil || !strings.Contains(err.Error(), "ServiceUnavailable") {
		t.Fatalf("twin show under the fault: %v", err)
	}
	out, err = invoke(t, ctx, e, "fault", "list")
	if err != nil || !strings.Contains(out, "f-1 fail twinRead with ServiceUnavailable on every device: 1 hits, ended") {
		t.Fatalf("fault list: %v\n%s", err, out)
	}
	if _, err := invoke(t, ctx, e, "fault", "add", "-kind", "meteor"); err == nil {
		t.Fatal("an unknown kind was accepted")
	}
	out, err = invoke(t, ctx, e, "tier", "-set", "B1")
	if err != nil || !strings.Contains(out, "B1 × 1, window 1m0s; daily quota used: 0 of 400000") {
		t.Fatalf("tier -set: %v\n%s", err, out)
	}
	if _, err := invoke(t, ctx, e, "twin", "show", "-device", "target"); err == nil {
		t.Fatal("a twin read on B1 went through")
	}
	out, err = invoke(t, ctx, e, "tier")
	if err != nil || !strings.Contains(out, "refused twinRead: 1") {
		t.Fatalf("tier: %v\n%s", err, out)
	}
	if out, err = invoke(t, ctx, e, "tier", "-set", "off"); err != nil || !strings.Contains(out, "nothing is throttled") {
		t.Fatalf("tier -set off: %v\n%s", err, out)
	}
}

// Ensure that following a job whose device is offline says what it
// waits for and until when, instead of a silent wait of up to an hour,
// and that a job that failed on a device exits with an error.
func TestJobWaitSaysWhy(t *testing.T) {
	e := emulatortest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.AddDevice(t, "asleep")
	out, err := invoke(t, ctx, e, "job", "reboot", "-condition", "deviceId = 'asleep'", "-max-execution-time", "2")
	if err == nil || !strings.Contains(err.Error(), "on 1 of its 1 devices it failed") || !strings.Contains(out, "the running ones wait for their device to connect or answer, until") {
		t.Fatalf("job on an offline device: %v\n%s", err, out)
	}
}

// Ensure that a flag after the query is a flag, not part of the query.
func TestFlagAfterQuery(t *testing.T) {
	e := emulatortest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.AddDevice(t, "queried")
	out, err := invoke(t, ctx, e, "query", "SELECT deviceId FROM devices", "-output", "json")
	var rows []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0]["deviceId"] != "queried" {
		t.Fatalf("query then -output json: %v\n%s", err, out)
	}
}
