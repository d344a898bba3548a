package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
)

var readyLine = regexp.MustCompile(`mqtt=(\S+) https=(\S+)`)

// emulatorProcess runs the emulator binary on dataDir with random ports and
// returns it with its MQTT and HTTPS addresses once it is ready.
func emulatorProcess(t *testing.T, bin, dataDir string) (*exec.Cmd, string, string) {
	t.Helper()
	cmd := exec.Command(bin, "-data-dir", dataDir, "-mqtt-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-amqp-addr", "127.0.0.1:0")
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
		return cmd, m[1], m[2]
	case <-time.After(20 * time.Second):
		t.Fatal("the emulator did not report ready")
		return nil, "", ""
	}
}

// Ensure that every write the emulator acknowledged survives kill -9:
// devices patch reported properties as fast as they can, the process is
// killed mid-stream, and after a restart each device's twin holds at least
// its last acknowledged value.
func TestE2EKill9KeepsAcknowledgedWrites(t *testing.T) {
	emu := filepath.Join(binaries(t), "emulator")
	data := t.TempDir()
	ca := filepath.Join(data, "ca.pem")
	cmd, mqttAddr, httpsAddr := emulatorProcess(t, emu, data)
	svcCS := func(https string) connstr.Service {
		_, port, _ := net.SplitHostPort(https)
		return connstr.Service{HostName: "localhost:" + port, SharedAccessKeyName: "iothubowner", SharedAccessKey: "GaHAKSjysEceGcPA0jGDrtY8nrstA90TMPPz0L5xHxw="}
	}
	svc, err := iotservice.New(svcCS(httpsAddr), iotservice.Options{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const devices = 8
	acked := make([]int, devices)
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < devices; i++ {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer dev.Close()
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := dev.UpdateReported(rctx, map[string]any{"counter": n})
				cancel()
				if err != nil {
					return // the process is gone
				}
				mu.Lock()
				acked[i] = n
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	mu.Lock()
	final := append([]int(nil), acked...)
	mu.Unlock()
	close(stop)
	wg.Wait()

	_, _, httpsAddr = emulatorProcess(t, emu, data)
	svc, _ = iotservice.New(svcCS(httpsAddr), iotservice.Options{CAFile: ca})
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
	if total < devices*5 {
		t.Fatalf("only %d writes were acknowledged before the kill; the test proves little", total)
	}
	t.Logf("%d acknowledged writes from %d devices survived kill -9", total, devices)
}
