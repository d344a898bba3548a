package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
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

var readyLine = regexp.MustCompile(`mqtt=(\S+) https=(\S+) amqp=(\S+)`)

// addrs are a running emulator's listeners.
type addrs struct{ mqtt, https, amqp string }

// emulatorProcess runs the emulator binary on dataDir with random ports and
// returns it with its addresses once it is ready.
func emulatorProcess(t *testing.T, bin, dataDir string) (*exec.Cmd, addrs) {
	t.Helper()
	return emulatorAt(t, bin, dataDir, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
}

// emulatorAt is emulatorProcess on the addresses given.
func emulatorAt(t *testing.T, bin, dataDir, mqtt, https, admin, amqp, plain string) (*exec.Cmd, addrs) {
	t.Helper()
	cmd := exec.Command(bin, "-data-dir", dataDir, "-mqtt-addr", mqtt, "-https-addr", https, "-admin-addr", admin, "-amqp-addr", amqp, "-amqp-plain-addr", plain)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
	}()
	select {
	case m := <-found:
		return cmd, addrs{mqtt: m[1], https: m[2], amqp: m[3]}
	case <-time.After(20 * time.Second):
		t.Fatal("the emulator did not report ready")
		return nil, addrs{}
	}
}

const devKey = "GaHAKSjysEceGcPA0jGDrtY8nrstA90TMPPz0L5xHxw=" // iothubowner's well-known development key

func serviceCS(https string) connstr.Service {
	_, port, _ := net.SplitHostPort(https)
	return connstr.Service{HostName: "localhost:" + port, SharedAccessKeyName: "iothubowner", SharedAccessKey: devKey}
}

// crashDevices registers n devices and connects them over MQTT.
func crashDevices(t *testing.T, svc *iotservice.Client, mqttAddr, ca string, n int) []*iotdevice.Client {
	t.Helper()
	ctx := context.Background()
	var devs []*iotdevice.Client
	for i := range n {
		id := fmt.Sprintf("crash-%d", i)
		d, err := svc.CreateDevice(ctx, iothub.Device{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(mqttAddr)
		cs := connstr.Device{HostName: "localhost", DeviceID: id, SharedAccessKey: d.Authentication.SymmetricKey.PrimaryKey, GatewayHostName: "localhost:" + port}
		dev, err := iotdevice.Dial(ctx, cs, iotdevice.Options{CAFile: ca, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, dev)
	}
	return devs
}

// writeUntilKilled runs write(i, n) for n = 1, 2, ... on each device until
// one fails, counting acknowledged writes per device; enough is closed
// once the devices together have that many.
func writeUntilKilled(devs []*iotdevice.Client, threshold int, write func(dev *iotdevice.Client, i, n int) error) (acked func() []int, enough <-chan struct{}, wait func()) {
	var mu sync.Mutex
	counts := make([]int, len(devs))
	total := 0
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for i, dev := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer dev.Close()
			for n := 1; ; n++ {
				if err := write(dev, i, n); err != nil {
					return // the process is gone
				}
				mu.Lock()
				counts[i] = n
				if total++; total == threshold {
					close(ch)
				}
				mu.Unlock()
			}
		}()
	}
	return func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), counts...)
	}, ch, wg.Wait
}

// Ensure that every write the emulator acknowledged survives kill -9:
// devices patch reported properties as fast as they can, the process is
// killed mid-stream, and after a restart each device's twin holds at least
// its last acknowledged value.
func TestE2EKill9KeepsAcknowledgedWrites(t *testing.T) {
	emu := filepath.Join(binaries(t), "emulator")
	data := t.TempDir()
	ca := filepath.Join(data, "ca.pem")
	cmd, at := emulatorProcess(t, emu, data)
	svc, err := iotservice.New(serviceCS(at.https), iotservice.Options{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const devices = 8
	devs := crashDevices(t, svc, at.mqtt, ca, devices)
	acked, enough, wait := writeUntilKilled(devs, 40*devices, func(dev *iotdevice.Client, _, n int) error {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := dev.UpdateReported(rctx, map[string]any{"counter": n})
		return err
	})
	<-enough // mid-stream: every device is still writing
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	final := acked()
	wait()

	_, at = emulatorProcess(t, emu, data)
	svc, _ = iotservice.New(serviceCS(at.https), iotservice.Options{CAFile: ca})
	total := 0
	for i := 0; i < devices; i++ {
		tw, err := svc.Twin(ctx, fmt.Sprintf("crash-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		if v, ok := tw.Properties.Reported.Props["counter"]; ok {
			fmt.Sscan(fmt.Sprint(v), &got)
		}
		if got < final[i] {
			t.Errorf("crash-%d: counter %d after restart, but %d was acknowledged", i, got, final[i])
		}
		total += final[i]
	}
	t.Logf("%d acknowledged writes from %d devices survived kill -9", total, devices)
}

// Ensure that every telemetry message a device got a PUBACK for is in
// the built-in endpoint's log after kill -9 and a restart, and that the
// events a consumer read before the kill keep their sequence numbers and
// offsets, so a consumer resuming from a checkpoint neither skips nor
// replays.
func TestE2EKill9KeepsAcknowledgedTelemetry(t *testing.T) {
	emu := filepath.Join(binaries(t), "emulator")
	data := t.TempDir()
	ca := filepath.Join(data, "ca.pem")
	cmd, at := emulatorProcess(t, emu, data)
	svc, err := iotservice.New(serviceCS(at.https), iotservice.Options{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tlsCfg := caConfig(t, ca)
	const devices = 8
	devs := crashDevices(t, svc, at.mqtt, ca, devices)

	// A consumer reads while the devices send.
	seen := map[string]iotevents.Event{}
	var seenMu sync.Mutex
	readCtx, stopReading := context.WithCancel(ctx)
	readDone := make(chan error, 1)
	r, err := iotevents.NewReader(ctx, eventhubs.ConnectionString("localhost", port(at.amqp), "iothubowner", devKey, "localhost"), iotevents.Options{TLSConfig: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		readDone <- r.Read(readCtx, iotevents.Start{Earliest: true}, func(ev iotevents.Event) error {
			seenMu.Lock()
			seen[ev.MessageID] = ev
			seenMu.Unlock()
			return nil
		})
	}()
	acked, enough, wait := writeUntilKilled(devs, 100*devices, func(dev *iotdevice.Client, i, n int) error {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return dev.SendEvent(sctx, fmt.Appendf(nil, `{"n":%d}`, n), topic.Properties{}.Set(topic.MessageID, fmt.Sprintf("crash-%d-%d", i, n)))
	})
	<-enough
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	final := acked()
	wait()
	stopReading()
	<-readDone // an error here is the killed connection
	r.Close()
	seenMu.Lock()
	before := seen
	seenMu.Unlock()

	_, at = emulatorProcess(t, emu, data)
	want := 0
	for _, n := range final {
		want += n
	}
	after := map[string]iotevents.Event{}
	r, err = iotevents.NewReader(ctx, eventhubs.ConnectionString("localhost", port(at.amqp), "iothubowner", devKey, "localhost"), iotevents.Options{TLSConfig: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	missing := func() int {
		m := 0
		for i, n := range final {
			for k := 1; k <= n; k++ {
				if _, ok := after[fmt.Sprintf("crash-%d-%d", i, k)]; !ok {
					m++
				}
			}
		}
		return m
	}
	readBefore := func() int {
		m := 0
		for id := range before {
			if _, ok := after[id]; !ok {
				m++
			}
		}
		return m
	}
	readCtx, stopReading = context.WithCancel(ctx)
	defer stopReading()
	err = r.Read(readCtx, iotevents.Start{Earliest: true}, func(ev iotevents.Event) error {
		after[ev.MessageID] = ev
		// Everything acknowledged, and everything a consumer read before
		// the kill (some of it maybe never acknowledged, but read, so
		// durable), must be there.
		if len(after) >= max(want, len(before)) && missing() == 0 && readBefore() == 0 {
			stopReading()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil { // at the deadline, say what is missing
		t.Fatal(err)
	}
	if m := missing(); m > 0 {
		t.Fatalf("%d of %d acknowledged messages are missing after kill -9", m, want)
	}
	for id, ev := range before {
		if a := after[id]; a.Sequence != ev.Sequence || a.Offset != ev.Offset || a.Partition != ev.Partition {
			t.Errorf("%s was %s/%d/%s before the kill and %s/%d/%s after", id, ev.Partition, ev.Sequence, ev.Offset, a.Partition, a.Sequence, a.Offset)
		}
	}
	t.Logf("%d acknowledged messages survived kill -9; %d read before it kept their numbers", want, len(before))
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func caConfig(t *testing.T, file string) *tls.Config {
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}
