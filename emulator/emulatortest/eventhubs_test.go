package emulatortest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iotevents"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Ensure that Microsoft's Go Event Hubs client reads what devices sent
// over each transport, with their properties and the hub's
// annotations, through all three ways in: the endpoint found from the
// IoT Hub connection string by the hub's redirect, the Event
// Hubs-compatible connection string over TLS, and the development form
// on plain AMQP.
func TestEventHubsGoClient(t *testing.T) {
	e := emulatortest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := e.AddDevice(t, "gopher")
	// One device, one connection at a time: a second would replace the
	// first.
	sends := iotdevice.Transports
	for i, tr := range sends {
		dev := e.Dial(t, e.TransportString(cs, tr), iotdevice.Options{Transport: tr})
		props := topic.Properties{}.Set(topic.MessageID, fmt.Sprintf("m-%d", i)).Set(topic.ContentType, "application/json").Set("alert", "high")
		if err := dev.SendEvent(ctx, fmt.Appendf(nil, `{"n":%d}`, i), props); err != nil {
			t.Fatal(err)
		}
		dev.Close()
	}
	opts := iotevents.Options{TLSConfig: e.TLSConfig(), AMQPAddr: e.AMQPAddr()}
	redirected, err := iotevents.Endpoint(ctx, e.ServiceString(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := e.EventHubConnectionString("iothubowner"); redirected != want {
		t.Fatalf("the redirect led to\n%s\nwant\n%s", redirected, want)
	}
	dev, _ := e.EventHubDevelopmentConnectionString("service")
	for _, conn := range []string{redirected, dev} {
		r, err := iotevents.NewReader(ctx, conn, opts)
		if err != nil {
			t.Fatalf("%s: %v", conn, err)
		}
		if len(r.Partitions()) != 4 {
			t.Errorf("partitions %v, want 4", r.Partitions())
		}
		var got []iotevents.Event
		rctx, stop := context.WithCancel(ctx)
		err = r.Read(rctx, iotevents.Start{Earliest: true}, func(ev iotevents.Event) error {
			if got = append(got, ev); len(got) == len(sends) {
				stop()
			}
			return nil
		})
		stop()
		r.Close()
		if err != nil || len(got) != len(sends) {
			t.Fatalf("%s: read %d events, %v", conn, len(got), err)
		}
		for i, ev := range got {
			if ev.DeviceID != "gopher" || ev.MessageID != fmt.Sprintf("m-%d", i) || ev.Content != "application/json" ||
				string(ev.Body) != fmt.Sprintf(`{"n":%d}`, i) || ev.Properties["alert"] != "high" || ev.Sequence != int64(i) ||
				ev.Enqueued.IsZero() || ev.System["iothub-message-source"] != "Telemetry" {
				t.Errorf("%s: event %d is %+v", conn, i, ev)
			}
		}
	}
}

// Ensure that the consumer groups of the flag and of the seed file exist,
// matched case-insensitively, and that any other is refused.
func TestConsumerGroups(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(seed, []byte(`{"devices": [], "consumerGroups": ["Analytics"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) {
		c.SeedFile, c.ConsumerGroups = seed, []string{"ops"}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dev := e.Dial(t, e.AddDevice(t, "grouped"), iotdevice.Options{})
	if err := dev.SendEvent(ctx, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	eh, _ := e.EventHubConnectionString("service")
	read := func(group string) error {
		r, err := iotevents.NewReader(ctx, eh, iotevents.Options{TLSConfig: e.TLSConfig(), ConsumerGroup: group})
		if err != nil {
			return err
		}
		defer r.Close()
		n := 0
		err = r.Read(ctx, iotevents.Start{Earliest: true, ToEnd: true}, func(iotevents.Event) error { n++; return nil })
		if err == nil && n != 1 {
			err = fmt.Errorf("%d events", n)
		}
		return err
	}
	for _, g := range []string{"$Default", "analytics", "OPS"} {
		if err := read(g); err != nil {
			t.Errorf("consumer group %s: %v", g, err)
		}
	}
	if err := read("nope"); err == nil || !strings.Contains(err.Error(), "consumer group") {
		t.Errorf("an unknown consumer group: %v", err)
	}
}
