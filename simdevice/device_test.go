package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// startSim runs one simulated device against an in-process emulator.
func startSim(t *testing.T) (*emulatortest.Env, *stats) {
	return startSimOn(t, iotdevice.MQTT, 0)
}

// startSimOn runs it on a transport, sending telemetry every interval.
func startSimOn(t *testing.T, tr iotdevice.Transport, interval time.Duration) (*emulatortest.Env, *stats) {
	t.Helper()
	e := emulatortest.Start(t)
	cs := e.TransportString(e.AddDevice(t, "sim-1"), tr)
	st := &stats{}
	s := newSim(cs, iotdevice.Options{Transport: tr, CAFile: e.CAFile(), HTTPSHost: e.HTTPSAddr(), Logger: slog.New(slog.DiscardHandler)},
		behaviour{RebootDelay: 100 * time.Millisecond, StepDelay: 50 * time.Millisecond, FirmwareVersion: "1.0.0", TelemetryInterval: interval},
		slog.New(slog.DiscardHandler), st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, st
}

func reported(t *testing.T, e *emulatortest.Env, check func(map[string]any) error) map[string]any {
	t.Helper()
	svc := e.Service(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		tw, err := svc.Twin(context.Background(), "sim-1")
		if err == nil {
			if err = check(tw.Properties.Reported.Props); err == nil {
				return tw.Properties.Reported.Props
			}
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func invoke(t *testing.T, e *emulatortest.Env, method, payload string) iothub.MethodResult {
	t.Helper()
	ten := 10
	res, err := e.Service(t).InvokeMethod(context.Background(), "sim-1",
		iothub.MethodRequest{MethodName: method, Payload: json.RawMessage(payload), ConnectTimeoutInSeconds: &ten})
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return res
}

// Ensure that the device reports its start-up state, acknowledges a desired
// telemetryInterval as a writable property, and that factoryReset clears
// what it reported and reports the start-up state again.
func TestStartupDesiredAndFactoryReset(t *testing.T) {
	e, _ := startSim(t)
	reported(t, e, func(r map[string]any) error {
		fw, _ := r["firmware"].(map[string]any)
		if fw["version"] != "1.0.0" || fw["status"] != "current" || r["startTime"] == nil {
			return fmt.Errorf("start-up report %v", r)
		}
		return nil
	})
	if _, err := e.Service(t).UpdateTwin(context.Background(), "sim-1", iothub.NewTwinPatch(nil, map[string]any{"telemetryInterval": 30}), ""); err != nil {
		t.Fatal(err)
	}
	reported(t, e, func(r map[string]any) error {
		ack, _ := r["telemetryInterval"].(map[string]any)
		if fmt.Sprint(ack["value"]) != "30" || fmt.Sprint(ack["ac"]) != "200" || fmt.Sprint(ack["av"]) != "2" {
			return fmt.Errorf("ack %v", ack)
		}
		return nil
	})
	invoke(t, e, "rebootDevice", "null")
	reported(t, e, func(r map[string]any) error {
		if r["rebootTime"] == nil {
			return fmt.Errorf("no rebootTime in %v", r)
		}
		return nil
	})
	if res := invoke(t, e, "factoryReset", "null"); res.Status != 200 {
		t.Fatalf("factoryReset: %+v", res)
	}
	reported(t, e, func(r map[string]any) error {
		if r["rebootTime"] != nil || r["firmware"] == nil {
			return fmt.Errorf("after factoryReset: %v", r)
		}
		return nil
	})
}

// Ensure that a firmware update without a version is refused, and unknown
// methods get 404.
func TestMethodErrors(t *testing.T) {
	e, st := startSim(t)
	if res := invoke(t, e, "firmwareUpdate", `{}`); res.Status != 400 {
		t.Fatalf("firmwareUpdate without a version: %+v", res)
	}
	if res := invoke(t, e, "selfDestruct", "null"); res.Status != 404 {
		t.Fatalf("unknown method: %+v", res)
	}
	if st.methods.Load() != 1 {
		t.Fatalf("methods counted %d", st.methods.Load())
	}
}

// Ensure that uploadLogs goes through the hub's file upload: against a
// hub without storage it answers 500 with the hub's reason.
func TestUploadLogsWithoutStorage(t *testing.T) {
	e, _ := startSim(t)
	res := invoke(t, e, "uploadLogs", "null")
	if res.Status != 500 || !strings.Contains(string(res.Payload), "file upload is not configured") {
		t.Fatalf("uploadLogs: %d %s", res.Status, res.Payload)
	}
}

// Ensure that the simulated device runs the tutorial on AMQP, over TLS
// and WebSocket: it reports its start-up state, and rebootDevice gets it
// to report a rebootTime; and that over HTTPS, which has no twin, it
// still sends telemetry.
func TestTransports(t *testing.T) {
	for _, tr := range []iotdevice.Transport{iotdevice.AMQP, iotdevice.AMQPWS} {
		t.Run(string(tr), func(t *testing.T) {
			e, _ := startSimOn(t, tr, 0)
			reported(t, e, func(r map[string]any) error {
				if r["startTime"] == nil {
					return fmt.Errorf("start-up report %v", r)
				}
				return nil
			})
			if res := invoke(t, e, "rebootDevice", "null"); res.Status != 200 {
				t.Fatalf("rebootDevice: %+v", res)
			}
			reported(t, e, func(r map[string]any) error {
				if r["rebootTime"] == nil {
					return fmt.Errorf("no rebootTime in %v", r)
				}
				return nil
			})
		})
	}
	t.Run("https", func(t *testing.T) {
		e, st := startSimOn(t, iotdevice.HTTPS, 20*time.Millisecond)
		svc := e.Service(t)
		deadline := time.Now().Add(10 * time.Second)
		for {
			msgs, err := svc.Messages(context.Background(), "sim-1")
			if err == nil && len(msgs) >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("telemetry over HTTPS: %d messages, %v (errors %d)", len(msgs), err, st.errors.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// Ensure that a device whose key the hub refuses stops with an error
// that says so, instead of retrying for ever.
func TestGivesUpOnRefusedCredentials(t *testing.T) {
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "wrong-key")
	cs.SharedAccessKey = "d3Jvbmcga2V5IGZvciB0aGlzIGRldmljZSEhISEhISE="
	s := newSim(cs, iotdevice.Options{CAFile: e.CAFile(), Logger: slog.New(slog.DiscardHandler)}, behaviour{FirmwareVersion: "1.0.0"},
		slog.New(slog.DiscardHandler), &stats{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := s.run(ctx)
	if !errors.Is(err, iotdevice.ErrUnauthorized) || ctx.Err() != nil || !strings.Contains(err.Error(), "not retrying") {
		t.Fatalf("run: %v; want it to give up on the refused key", err)
	}
}
