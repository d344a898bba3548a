package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// cmdFault drives the emulator's faults: fault add, list, clear.
func cmdFault(ctx context.Context, e *env, sub string, args []string) error {
	kind := e.flags.String("kind", "", "add: "+kindList())
	device := e.flags.String("device", "", "add: the device the fault concerns (default: every device)")
	op := e.flags.String("operation", "", "add: the operation of a fail, delay or drop fault: "+opList())
	code := e.flags.String("error-code", "", "add: the error a fail fault answers with, by name or number (default ServiceUnavailable)")
	count := e.flags.Int("count", 0, "add: end the fault after this many calls (0: no limit)")
	delay := e.flags.Duration("delay", 0, "add: the delay of a delay fault")
	duration := e.flags.Duration("duration", 0, "add: end the fault after this long (0: no limit)")
	id := e.flags.String("id", "", "clear: the fault to end (default: every fault)")
	if err := e.parse(args); err != nil {
		return err
	}
	switch sub {
	case "add":
		f, err := e.svc.AddFault(ctx, iothub.Fault{Kind: iothub.FaultKind(*kind), DeviceID: *device, Operation: iothub.Operation(*op),
			ErrorCode: *code, Count: *count, Delay: iothub.Duration(*delay), Duration: iothub.Duration(*duration)})
		if err != nil {
			return err
		}
		e.print(f, describeFault(f))
		return nil
	case "list":
		faults, err := e.svc.Faults(ctx)
		if err != nil {
			return err
		}
		lines := make([]string, len(faults))
		for i, f := range faults {
			lines[i] = describeFault(f)
		}
		if len(lines) == 0 {
			lines = []string{"no faults"}
		}
		e.print(faults, strings.Join(lines, "\n"))
		return nil
	case "clear":
		if err := e.svc.ClearFault(ctx, *id); err != nil {
			return err
		}
		what := "every fault"
		if *id != "" {
			what = *id
		}
		e.print(map[string]any{"cleared": what}, "cleared "+what)
		return nil
	}
	return fmt.Errorf("%w: fault add|list|clear", errUsage)
}

func describeFault(f iothub.Fault) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", f.ID, f.Kind)
	if f.Operation != "" {
		fmt.Fprintf(&b, " %s", f.Operation)
	}
	if f.ErrorCode != "" {
		fmt.Fprintf(&b, " with %s", f.ErrorCode)
	}
	if f.Delay > 0 {
		fmt.Fprintf(&b, " by %s", time.Duration(f.Delay))
	}
	device := f.DeviceID
	if device == "" {
		device = "every device"
	}
	fmt.Fprintf(&b, " on %s: %d hits", device, f.Hits)
	switch {
	case f.Active && !f.Ends.IsZero():
		fmt.Fprintf(&b, ", active until %s", f.Ends.UTC().Format(time.RFC3339))
	case f.Active:
		b.WriteString(", active")
	default:
		b.WriteString(", ended")
	}
	return b.String()
}

func kindList() string {
	names := make([]string, len(iothub.FaultKinds))
	for i, k := range iothub.FaultKinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

func opList() string {
	names := make([]string, len(iothub.Operations))
	for i, o := range iothub.Operations {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

// cmdTier shows or sets the tier the emulator emulates.
func cmdTier(ctx context.Context, e *env, args []string) error {
	set := e.flags.String("set", "", "emulate this tier: F1, B1, B2, B3, S1, S2 or S3; \"off\" throttles nothing")
	units := e.flags.Int("units", 1, "with -set: units of the tier")
	window := e.flags.Duration("window", time.Minute, "with -set: how much of a throttle's rate may be spent at once")
	queue := e.flags.Duration("queue", 0, "with -set: how long an operation over a throttle waits in the traffic-shaping queue before a 429")
	if err := e.parse(args); err != nil {
		return err
	}
	var (
		t   iothub.TierSettings
		err error
	)
	switch *set {
	case "":
		t, err = e.svc.Tier(ctx)
	case "off":
		t, err = e.svc.SetTier(ctx, iothub.TierSettings{})
	default:
		tier, perr := iothub.ParseTier(*set)
		if perr != nil {
			return perr
		}
		t, err = e.svc.SetTier(ctx, iothub.TierSettings{Tier: tier, Units: *units, Window: iothub.Duration(*window), Queue: iothub.Duration(*queue)})
	}
	if err != nil {
		return err
	}
	if t.Tier == "" {
		e.print(t, "no tier emulated: nothing is throttled")
		return nil
	}
	line := fmt.Sprintf("%s × %d, window %s; daily quota used: %d of %d", t.Tier, t.Units, time.Duration(t.Window), t.MessagesToday, t.Tier.DailyMessages(t.Units))
	if t.Queue > 0 {
		line = fmt.Sprintf("%s × %d, window %s, queue %s; daily quota used: %d of %d", t.Tier, t.Units, time.Duration(t.Window), time.Duration(t.Queue), t.MessagesToday, t.Tier.DailyMessages(t.Units))
	}
	for _, counts := range []struct {
		what string
		n    map[string]int64
	}{{"refused", t.Throttled}, {"queued", t.Shaped}} {
		for _, k := range slices.Sorted(maps.Keys(counts.n)) {
			line += fmt.Sprintf("\n  %s %s: %d", counts.what, k, counts.n[k])
		}
	}
	e.print(t, line)
	return nil
}
