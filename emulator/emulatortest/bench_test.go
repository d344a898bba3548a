package emulatortest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// benchDevices connects n devices that answer the "echo" method.
func benchDevices(b *testing.B, e *emulatortest.Env, n int) []*iotdevice.Client {
	b.Helper()
	devs := make([]*iotdevice.Client, n)
	for i := range devs {
		devs[i] = e.Dial(b, e.AddDevice(b, fmt.Sprintf("bench-%d", i)), iotdevice.Options{})
		devs[i].OnMethod("echo", func(_ context.Context, p json.RawMessage) (int, any) { return 200, p })
	}
	return devs
}

// reportLatency adds p50 and p99 in microseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRoundTrip compares, with one caller, a direct method (REST →
// hub → MQTT device → hub → REST) with the reference: a bare MQTT
// request/response through the same broker (a device's twin GET).
func BenchmarkRoundTrip(b *testing.B) {
	e := emulatortest.Start(b)
	dev := benchDevices(b, e, 1)[0]
	svc := e.Service(b)
	ctx := context.Background()
	payload := json.RawMessage(`{"n":1}`)
	b.Run("reference-mqtt-twin-get", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, err := dev.Twin(ctx); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		reportLatency(b, lat)
	})
	b.Run("direct-method", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, err := svc.InvokeMethod(ctx, "bench-0", iothub.MethodRequest{MethodName: "echo", Payload: payload}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		reportLatency(b, lat)
	})
}

// BenchmarkParallel64 measures calls per second with 64 concurrent callers,
// one device each, beside the reference: 64 devices doing twin GETs.
func BenchmarkParallel64(b *testing.B) {
	const callers = 64
	e := emulatortest.Start(b)
	devs := benchDevices(b, e, callers)
	svc := e.Service(b)
	ctx := context.Background()
	run := func(b *testing.B, op func(i int) error) {
		var next atomic.Int64
		b.SetParallelism(callers / 2) // GOMAXPROCS is 2 here: 64 goroutines
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1)-1) % callers
			for pb.Next() {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	}
	b.Run("reference-mqtt-twin-get", func(b *testing.B) {
		run(b, func(i int) error { _, err := devs[i].Twin(ctx); return err })
	})
	b.Run("direct-method", func(b *testing.B) {
		run(b, func(i int) error {
			_, err := svc.InvokeMethod(ctx, fmt.Sprintf("bench-%d", i), iothub.MethodRequest{MethodName: "echo"})
			return err
		})
	})
}

// BenchmarkReportedWrites measures durable reported-property patches per
// second from 100 devices (each acknowledged after its fsynced commit),
// beside the reference: 100 devices doing twin GETs.
func BenchmarkReportedWrites(b *testing.B) {
	const devices = 100
	e := emulatortest.Start(b)
	devs := benchDevices(b, e, devices)
	ctx := context.Background()
	run := func(b *testing.B, op func(d *iotdevice.Client, n int) error) {
		var left atomic.Int64
		left.Store(int64(b.N))
		var wg sync.WaitGroup
		start := time.Now()
		for _, d := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; left.Add(-1) >= 0; n++ {
					if err := op(d, n); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	}
	b.Run("reference-mqtt-twin-get", func(b *testing.B) {
		run(b, func(d *iotdevice.Client, _ int) error { _, err := d.Twin(ctx); return err })
	})
	b.Run("durable-reported-patch", func(b *testing.B) {
		run(b, func(d *iotdevice.Client, n int) error {
			_, err := d.UpdateReported(ctx, map[string]any{"counter": n, "temperature": 21.5})
			return err
		})
	})
}
