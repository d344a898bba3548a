package emulatortest_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Ensure that acknowledged telemetry is in the log with its sequence
// number before the device's send returns, that the numbers and offsets
// survive a restart (consumers resume from stored offsets), and that the
// oldest events are evicted past the retention count.
func TestTelemetryLog(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.RetainEvents = 3 }))
	cs := e.AddDevice(t, "logger")
	dev := e.Dial(t, cs, iotdevice.Options{CAFile: e.CAFile()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := e.Hub().PartitionOf("logger")
	for i := range 5 {
		if err := dev.SendEvent(ctx, fmt.Appendf(nil, `{"n":%d}`, i), nil); err != nil {
			t.Fatal(err)
		}
		info, err := e.Hub().Partition(p)
		if err != nil || info.Last != int64(i) {
			t.Fatalf("after send %d the partition holds %+v, %v", i, info, err)
		}
	}
	dev.Close()
	e = e.Restart(t)
	info, err := e.Hub().Partition(p)
	if err != nil || info.Begin != 2 || info.Last != 4 {
		t.Fatalf("after a restart: %+v, %v; want events 2 to 4", info, err)
	}
	evs, err := e.Hub().Events(ctx, p, 0, 10)
	if err != nil || len(evs) != 3 || evs[0].Sequence != 2 || string(evs[2].Body) != `{"n":4}` || evs[2].DeviceID != "logger" {
		t.Fatalf("events %+v, %v", evs, err)
	}
	// The next event continues the numbering.
	dev = e.Dial(t, cs, iotdevice.Options{CAFile: e.CAFile()})
	if err := dev.SendEvent(ctx, []byte(`{"n":5}`), nil); err != nil {
		t.Fatal(err)
	}
	if evs, err := e.Hub().Events(ctx, p, 5, 10); err != nil || len(evs) != 1 || evs[0].Sequence != 5 {
		t.Fatalf("the event after the restart: %+v, %v", evs, err)
	}
}

// Ensure that a device with many QoS 1 messages in flight gets their
// PUBACKs in the order it published them [MQTT-4.6.0-2], each only once
// the message is in the log.
func TestTelemetryInFlight(t *testing.T) {
	e := emulatortest.Start(t)
	d := dialRawDevice(t, e, "pipelined", topic.FilterTwinResponses)
	const n = 300 // past maxPendingAcks, so the device's reads wait too
	go func() {
		for i := 1; i <= n; i++ {
			if err := d.publishQoS1(topic.Event("pipelined", "", nil).String(), uint16(i), fmt.Appendf(nil, "%d", i)); err != nil {
				return
			}
		}
	}()
	p := e.Hub().PartitionOf("pipelined")
	for want := 1; want <= n; {
		typ, body := d.read(t)
		if typ != 0x40 {
			continue
		}
		if got := int(binary.BigEndian.Uint16(body)); got != want {
			t.Fatalf("PUBACK %d, want %d", got, want)
		}
		if info, _ := e.Hub().Partition(p); info.Last < int64(want-1) {
			t.Fatalf("PUBACK %d before its message was in the log (last %d)", want, info.Last)
		}
		want++
	}
}

// Ensure that the log's size is capped, all partitions together: with a
// cap of 4 partitions × 256 KB, a device sending 60 KB messages (80 KB
// stored, as base64) keeps the newest three in its partition, the newest
// always; the size counted survives a restart.
func TestTelemetryLogBytesCapped(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.RetainBytes = 4 * 256 * 1024 }))
	cs := e.AddDevice(t, "flood")
	dev := e.Dial(t, cs, iotdevice.Options{CAFile: e.CAFile()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := e.Hub().PartitionOf("flood")
	body := make([]byte, 60*1024)
	for i := range 6 {
		if err := dev.SendEvent(ctx, body, nil); err != nil {
			t.Fatal(err)
		}
		info, _ := e.Hub().Partition(p)
		if kept := info.Last - info.Begin + 1; info.Last != int64(i) || kept != min(int64(i)+1, 3) {
			t.Fatalf("after message %d the partition holds %+v (%d events); want the newest three at most", i, info, kept)
		}
	}
	dev.Close()
	e = e.Restart(t)
	dev = e.Dial(t, cs, iotdevice.Options{CAFile: e.CAFile()})
	if err := dev.SendEvent(ctx, body, nil); err != nil {
		t.Fatal(err)
	}
	if info, _ := e.Hub().Partition(p); info.Begin != 4 || info.Last != 6 {
		t.Fatalf("after a restart: %+v; want events 4 to 6", info)
	}
}
