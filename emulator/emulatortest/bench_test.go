package emulatortest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// cpuClock measures the CPU time the whole process (emulator and clients)
// spends, a steadier figure than throughput on a shared machine.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

// report adds the CPU microseconds spent per operation.
func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64((processCPU()-c.start).Microseconds())/float64(b.N), "cpu-µs/op")
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

// The benchmarks run each measure twice: with the lean load generators of
// loadgen_test.go, which measure the hub, and with the project's own
// clients (net/http and Paho underneath, names ending in -api-clients),
// which measure the hub and the clients together.

// benchPair is a device and a caller of its "echo" method, lean or not.
type benchPair struct {
	twinGet func() error      // the reference: a device's twin GET
	invoke  func() error      // a direct method on the device
	report  func(n int) error // a durable reported patch
	name    string            // the variant's suffix
}

// leanPairs connects n lean devices, each with its caller.
func leanPairs(b *testing.B, e *emulatortest.Env, prefix string, n int) []benchPair {
	b.Helper()
	ps := make([]benchPair, n)
	for i := range ps {
		id := fmt.Sprintf("%s-%d", prefix, i)
		d := dialRawDevice(b, e, id, topic.FilterMethods, topic.FilterTwinResponses)
		c := newRawCaller(b, e, id, "echo")
		ps[i] = benchPair{twinGet: d.twinGet, invoke: c.call, report: d.reportCounter}
		go d.serve()
	}
	return ps
}

// apiPairs connects n devices with the project's clients.
func apiPairs(b *testing.B, e *emulatortest.Env, prefix string, n int) []benchPair {
	b.Helper()
	svc := e.Service(b)
	ctx := context.Background()
	payload := json.RawMessage(`{"n":1}`)
	ps := make([]benchPair, n)
	for i := range ps {
		id := fmt.Sprintf("%s-%d", prefix, i)
		d := e.Dial(b, e.AddDevice(b, id), iotdevice.Options{})
		d.OnMethod("echo", func(_ context.Context, p json.RawMessage) (int, any) { return 200, p })
		ps[i] = benchPair{
			twinGet: func() error { _, err := d.Twin(ctx); return err },
			invoke: func() error {
				_, err := svc.InvokeMethod(ctx, id, iothub.MethodRequest{MethodName: "echo", Payload: payload})
				return err
			},
			report: func(n int) error {
				_, err := d.UpdateReported(ctx, map[string]any{"counter": n, "temperature": 21.5})
				return err
			},
			name: "-api-clients",
		}
	}
	return ps
}

// BenchmarkRoundTrip compares, with one caller, a direct method (REST →
// hub → MQTT device → hub → REST) with the reference: a bare MQTT
// request/response through the same broker (a device's twin GET).
func BenchmarkRoundTrip(b *testing.B) {
	e := emulatortest.Start(b)
	for _, p := range []benchPair{leanPairs(b, e, "lean", 1)[0], apiPairs(b, e, "api", 1)[0]} {
		latency := func(op func() error) func(b *testing.B) {
			return func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					if err := op(); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				reportLatency(b, lat)
			}
		}
		b.Run("reference-mqtt-twin-get"+p.name, latency(p.twinGet))
		b.Run("direct-method"+p.name, latency(p.invoke))
	}
}

// BenchmarkParallel64 measures calls per second with 64 concurrent callers,
// one device each, beside the reference: 64 devices doing twin GETs.
func BenchmarkParallel64(b *testing.B) {
	const callers = 64
	e := emulatortest.Start(b)
	run := func(ps []benchPair, op func(benchPair) func() error) func(b *testing.B) {
		return func(b *testing.B) {
			var next atomic.Int64
			b.SetParallelism(callers / 2) // GOMAXPROCS is 2 here: 64 goroutines
			cpu := startCPU()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				do := op(ps[int(next.Add(1)-1)%callers])
				for pb.Next() {
					if err := do(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			cpu.report(b)
		}
	}
	for _, ps := range [][]benchPair{leanPairs(b, e, "lean", callers), apiPairs(b, e, "api", callers)} {
		b.Run("reference-mqtt-twin-get"+ps[0].name, run(ps, func(p benchPair) func() error { return p.twinGet }))
		b.Run("direct-method"+ps[0].name, run(ps, func(p benchPair) func() error { return p.invoke }))
	}
}

// BenchmarkReportedWrites measures durable reported-property patches per
// second from 100 devices (each acknowledged after its fsynced commit),
// beside the reference: 100 devices doing twin GETs.
func BenchmarkReportedWrites(b *testing.B) {
	const devices = 100
	e := emulatortest.Start(b)
	run := func(ps []benchPair, op func(p benchPair, n int) error) func(b *testing.B) {
		return func(b *testing.B) {
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			cpu := startCPU()
			start := time.Now()
			for _, p := range ps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; left.Add(-1) >= 0; n++ {
						if err := op(p, n); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
			cpu.report(b)
		}
	}
	for _, ps := range [][]benchPair{leanPairs(b, e, "lean", devices), apiPairs(b, e, "api", devices)} {
		b.Run("reference-mqtt-twin-get"+ps[0].name, run(ps, func(p benchPair, _ int) error { return p.twinGet() }))
		b.Run("durable-reported-patch"+ps[0].name, run(ps, func(p benchPair, n int) error { return p.report(n) }))
	}
}
