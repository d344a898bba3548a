package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// tlsHandshakes measures bare TLS handshakes per second against the MQTT
// listener from 64 goroutines: the reference for the fleet's connect rate.
func tlsHandshakes(b *testing.B, e *emulatortest.Env, n int) float64 {
	cfg := e.TLSConfig()
	work := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c, err := tls.Dial("tcp", e.MQTTAddr(), cfg)
				if err != nil {
					b.Error(err)
					return
				}
				c.Close()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkFleet runs FLEET_DEVICES (default 10,000) simulated devices in
// one simdevice process against an in-process emulator, and reports how
// fast they register and connect, beside bare TLS handshakes per second
// against the same listener, and the memory per device of both processes.
// Run it once: go test -run '^$' -bench Fleet -benchtime 1x ./emulator
func BenchmarkFleet(b *testing.B) {
	n := 10000
	if v := os.Getenv("FLEET_DEVICES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	bin := binaries(b)
	e := emulatortest.Start(b)
	ref := tlsHandshakes(b, e, 2000)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, mqttPort, _ := net.SplitHostPort(e.MQTTAddr())
	b.ResetTimer()
	start := time.Now()
	p := startProcess(b, filepath.Join(bin, "simdevice"), nil, "-count", strconv.Itoa(n), "-service-connection-string", e.ServiceString().String(),
		"-gateway-host-name", "localhost:"+mqttPort, "-ca-file", e.CAFile(), "-telemetry-interval", "0", "-summary-interval", "1h", "-log-level", "warn")
	waitUntil(b, 10*time.Minute, connected(e, n))
	took := time.Since(start)
	b.StopTimer()
	time.Sleep(time.Second) // let the fleet settle before reading its memory
	rss, err := rssKiB(p.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(ref, "ref-tls-handshakes/s")
	b.ReportMetric(float64(n)/took.Seconds(), "devices/s")
	b.ReportMetric(float64(rss)/float64(n), "simdevice-KiB/device")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/1024/float64(n), "emulator-heap-KiB/device")
	b.ReportMetric(float64(n), "devices")
}
