package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/eventhubs"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iotevents"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// TestSoak is make soak, not part of the test suite: SOAK_DEVICES (2,000)
// devices that come and go, under direct-method and telemetry load, for
// SOAK_DURATION (5 minutes), with a kill -9 and a restart on the same
// ports halfway. It reports the calls made and how many reached another
// device than the one called (want 0), the acknowledged messages and
// reported patches lost (want 0), and the emulator's live memory and
// goroutines before, during and after the load.
func TestSoak(t *testing.T) {
	if os.Getenv("SOAK") == "" {
		t.Skip("make soak runs it")
	}
	duration := envDuration(t, "SOAK_DURATION", 5*time.Minute)
	n := envInt(t, "SOAK_DEVICES", 2000)
	bin := binaries(t) + string(os.PathSeparator) + "emulator"
	data := t.TempDir()
	ports := freeAddrs(t, 5)
	var proc *exec.Cmd
	start := func() {
		proc, _ = emulatorAt(t, bin, data, ports[0], ports[1], ports[2], ports[3], ports[4])
	}
	start()
	ca := data + string(os.PathSeparator) + "ca.pem"
	svc, err := iotservice.New(serviceCS(ports[1]), iotservice.Options{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+10*time.Minute)
	defer cancel()
	measure := func() map[string]uint64 {
		res, err := http.Get("http://" + ports[2] + "/runtime?gc=1")
		if err != nil {
			return nil
		}
		defer res.Body.Close()
		var m map[string]uint64
		json.NewDecoder(res.Body).Decode(&m)
		return m
	}
	runtimeOf := func() string {
		m := measure()
		return fmt.Sprintf("%d goroutines, %.1f MiB live heap", m["goroutines"], float64(m["heapAllocBytes"])/(1<<20))
	}
	idleGoroutines := measure()["goroutines"]
	idle := runtimeOf()

	// The devices, with keys of their own ids, in bulk.
	key := func(id string) string { s := sha256.Sum256([]byte(id)); return base64.StdEncoding.EncodeToString(s[:]) }
	for i := 0; i < n; i += iothub.MaxBulkDevices {
		var batch []iothub.ExportImportDevice
		for j := i; j < min(n, i+iothub.MaxBulkDevices); j++ {
			id := fmt.Sprintf("soak-%04d", j)
			batch = append(batch, iothub.ExportImportDevice{ID: id, ImportMode: iothub.ImportCreate,
				Authentication: &iothub.Authentication{Type: iothub.AuthSAS, SymmetricKey: iothub.SymmetricKey{PrimaryKey: key(id), SecondaryKey: key(id + "/2")}}})
		}
		if _, err := svc.Bulk(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}

	registered := runtimeOf()

	// Each device connects, sends a message every 10 s and reports every
	// 30 s (with jitter), answers whoami with its own id, and leaves after
	// 20 to 90 s for up to 3 s: churn. What the hub acknowledged is kept.
	var (
		stop             atomic.Bool
		ackedMu          sync.Mutex
		acked            = map[string]bool{} // message ids
		reported         = make([]int, n)    // last acknowledged reported seq per device
		sends, sendFails atomic.Int64
	)
	_, mqttPort, _ := net.SplitHostPort(ports[0])
	var devices sync.WaitGroup
	for i := range n {
		devices.Add(1)
		go func() {
			defer devices.Done()
			id := fmt.Sprintf("soak-%04d", i)
			cs := connstr.Device{HostName: "localhost", DeviceID: id, SharedAccessKey: key(id), GatewayHostName: "localhost:" + mqttPort}
			seq := 0
			for !stop.Load() {
				c, err := iotdevice.New(cs, iotdevice.Options{CAFile: ca, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Error(err)
					return
				}
				c.OnMethod("whoami", func(context.Context, json.RawMessage) (int, any) { return 200, map[string]string{"id": id} })
				cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
				err = c.Connect(cctx)
				ccancel()
				if err != nil {
					c.Close()
					pause(&stop, time.Duration(500+rand.IntN(2000))*time.Millisecond)
					continue
				}
				leave := time.Now().Add(time.Duration(20+rand.IntN(70)) * time.Second)
				for !stop.Load() && time.Now().Before(leave) {
					seq++
					mid := fmt.Sprintf("%s-%d", id, seq)
					sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
					err := c.SendEvent(sctx, fmt.Appendf(nil, `{"seq":%d}`, seq), topic.Properties{}.Set(topic.MessageID, mid))
					if err == nil && seq%3 == 0 {
						if _, rerr := c.UpdateReported(sctx, map[string]any{"seq": seq}); rerr == nil {
							ackedMu.Lock()
							reported[i] = seq
							ackedMu.Unlock()
						}
					}
					scancel()
					sends.Add(1)
					if err != nil {
						sendFails.Add(1)
					} else {
						ackedMu.Lock()
						acked[mid] = true
						ackedMu.Unlock()
					}
					pause(&stop, time.Duration(8000+rand.IntN(4000))*time.Millisecond)
				}
				c.Close()
				pause(&stop, time.Duration(rand.IntN(3000))*time.Millisecond)
			}
		}()
	}

	// Callers invoke whoami on devices at random and check who answered.
	var calls, answered, misrouted atomic.Int64
	var callers sync.WaitGroup
	for range 16 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			five := 5
			for !stop.Load() {
				id := fmt.Sprintf("soak-%04d", rand.IntN(n))
				res, err := svc.InvokeMethod(ctx, id, iothub.MethodRequest{MethodName: "whoami", ResponseTimeoutInSeconds: &five})
				calls.Add(1)
				if err != nil {
					continue // offline now: churn
				}
				answered.Add(1)
				var who struct{ ID string }
				if json.Unmarshal(res.Payload, &who) != nil || who.ID != id {
					misrouted.Add(1)
				}
			}
		}()
	}

	begin := time.Now()
	pause(&stop, min(30*time.Second, duration/4))
	loaded := runtimeOf()
	pause(&stop, time.Until(begin.Add(duration/2)))
	beforeKill := runtimeOf()
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	start()
	t.Logf("soak: killed with -9 and restarted at %v", time.Since(begin).Round(time.Second))
	pause(&stop, time.Until(begin.Add(duration)))
	duringAfterRestart := runtimeOf()
	stop.Store(true)
	callers.Wait()
	devices.Wait()
	// The devices that left cost nothing once their sockets are gone: the
	// goroutines come back to about the idle count.
	poll := time.NewTicker(500 * time.Millisecond)
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && measure()["goroutines"] > idleGoroutines+20; {
		<-poll.C
	}
	poll.Stop()
	after := runtimeOf()
	if path := os.Getenv("SOAK_HEAP_PROFILE"); path != "" {
		if res, err := http.Get("http://" + ports[2] + "/debug/pprof/heap?gc=1"); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			os.WriteFile(path, b, 0o644)
		}
	}

	// Every acknowledged message is in the built-in endpoint, and every
	// device's twin holds at least its last acknowledged report.
	r, err := iotevents.NewReader(ctx, eventhubs.ConnectionString("localhost", port(ports[3]), "iothubowner", devKey, "localhost"), iotevents.Options{TLSConfig: caConfig(t, ca)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ackedMu.Lock()
	want := len(acked)
	ackedMu.Unlock()
	found := 0
	readCtx, stopReading := context.WithTimeout(ctx, 2*time.Minute)
	defer stopReading()
	r.Read(readCtx, iotevents.Start{Earliest: true}, func(ev iotevents.Event) error {
		if acked[ev.MessageID] {
			found++
			delete(acked, ev.MessageID)
		}
		if found == want {
			stopReading()
		}
		return nil
	})
	lostReports := 0
	for i := range n {
		tw, err := svc.Twin(ctx, fmt.Sprintf("soak-%04d", i))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := strconv.Atoi(fmt.Sprint(tw.Properties.Reported.Props["seq"]))
		if got < reported[i] {
			lostReports++
		}
	}
	t.Logf("soak: %d devices for %v; %d method calls, %d answered, %d misrouted", n, duration, calls.Load(), answered.Load(), misrouted.Load())
	t.Logf("soak: %d messages sent, %d acknowledged, %d of those lost; %d devices' last acknowledged report lost", sends.Load(), want, want-found, lostReports)
	t.Logf("soak: emulator idle %s; with the devices registered %s; loaded %s; before the kill %s; after the restart %s; after the load %s",
		idle, registered, loaded, beforeKill, duringAfterRestart, after)
	if misrouted.Load() > 0 || found != want || lostReports > 0 {
		t.Fatal("soak: misrouted calls or lost acknowledged writes")
	}
}

// pause waits d, or less if stop is set (checked every 100 ms): the
// load's own pacing.
func pause(stop *atomic.Bool, d time.Duration) {
	end := time.Now().Add(d)
	for !stop.Load() && time.Now().Before(end) {
		time.Sleep(min(100*time.Millisecond, time.Until(end)))
	}
}

func freeAddrs(t *testing.T, k int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return d
	}
	return def
}

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}
