package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds emulator, simdevice and invoker once per test run.
func binaries(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs binaries; skipped with -short")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "iothub-e2e-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(os.PathSeparator), ".", "../simdevice", "../invoker")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// process is a running binary whose output is kept.
type process struct {
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startProcess runs a binary in the background until the test ends.
func startProcess(t testing.TB, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &syncBuffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.out.String())
		}
	})
	return p
}

// runBin runs a binary to completion and returns its output and error.
func runBin(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func serviceEnv(e *emulatortest.Env) []string {
	return []string{"IOTHUB_CONNECTION_STRING=" + e.ServiceString().String(), "IOTHUB_CA_FILE=" + e.CAFile(), "IOTHUB_AMQP_ADDR=" + e.AMQPAddr()}
}

// Ensure that the tutorial's flow works as three separate processes: the
// invoker registers the device and prints its connection string, the
// simulated device connects with it, and the invoker's reboot prints
// status 200, the payload and a reboot time later than its call.
func TestE2EReboot(t *testing.T) {
	bin := binaries(t)
	data := t.TempDir()
	_, at := emulatorProcess(t, filepath.Join(bin, "emulator"), data)
	_, mqttPort, _ := net.SplitHostPort(at.mqtt)
	env := []string{"IOTHUB_CONNECTION_STRING=" + serviceCS(at.https).String(),
		"IOTHUB_CA_FILE=" + filepath.Join(data, "ca.pem")}
	out, err := runBin(t, filepath.Join(bin, "invoker"), env, "device", "create", "-device", "sim-1", "-output", "json")
	var created struct{ ConnectionString string }
	if err != nil || json.Unmarshal([]byte(out), &created) != nil {
		t.Fatalf("device create: %v\n%s", err, out)
	}
	cs, err := connstr.ParseDevice(created.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	if cs.HostName != "localhost" {
		t.Fatalf("the device connection string names %q, not the hub", cs.HostName)
	}
	cs.GatewayHostName = "localhost:" + mqttPort
	startProcess(t, filepath.Join(bin, "simdevice"), nil, "-connection-string", cs.String(), "-ca-file", filepath.Join(data, "ca.pem"),
		"-reboot-delay", "1s", "-telemetry-interval", "0")
	called := time.Now().UTC()
	out, err = runBin(t, filepath.Join(bin, "invoker"), env, "reboot", "-device", "sim-1", "-connect-timeout", "30")
	if err != nil {
		t.Fatalf("invoker: %v\n%s", err, out)
	}
	if !strings.Contains(out, "rebootDevice on sim-1: status 200") || !strings.Contains(out, `"result":"Reboot started"`) {
		t.Fatalf("invoker output:\n%s", out)
	}
	i := strings.Index(out, "reported rebootTime ")
	if i < 0 {
		t.Fatalf("no reboot time in:\n%s", out)
	}
	rebooted, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out[i+len("reported rebootTime "):]))
	if err != nil || !rebooted.After(called) {
		t.Fatalf("reboot time %v (%v) is not after the call at %v", rebooted, err, called)
	}

	// The simulated device announced its model: its digital twin has it,
	// with the reported rebootTime.
	out, err = runBin(t, filepath.Join(bin, "invoker"), env, "dt", "show", "-device", "sim-1")
	if err != nil || !strings.Contains(out, "sim-1 (model dtmi:iothubemulator:SimulatedDevice;1)") || !strings.Contains(out, "rebootTime = ") {
		t.Fatalf("invoker dt show: %v\n%s", err, out)
	}
}

// Ensure that the invoker fails clearly for an unknown or offline device.
func TestE2EInvokerErrors(t *testing.T) {
	bin := binaries(t)
	e := emulatortest.Start(t)
	e.AddDevice(t, "offline")
	out, err := runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "reboot", "-device", "ghost")
	if err == nil || !strings.Contains(out, `device "ghost" is not registered`) {
		t.Fatalf("unknown device: %v\n%s", err, out)
	}
	out, err = runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "reboot", "-device", "offline")
	if err == nil || !strings.Contains(out, `device "offline" is not connected`) {
		t.Fatalf("offline device: %v\n%s", err, out)
	}
	out, err = runBin(t, filepath.Join(bin, "invoker"), nil, "reboot", "-device", "x")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(out, "IOTHUB_CONNECTION_STRING") {
		t.Fatalf("no connection string: %v\n%s", err, out)
	}
}

// Ensure that a firmware update runs to completion through its stages.
func TestE2EFirmwareUpdate(t *testing.T) {
	bin := binaries(t)
	e := emulatortest.Start(t)
	cs := e.AddDevice(t, "fw-1")
	sim := startProcess(t, filepath.Join(bin, "simdevice"), nil, "-connection-string", cs.String(), "-ca-file", e.CAFile(),
		"-reboot-delay", "500ms", "-firmware-step-delay", "1s", "-telemetry-interval", "0")
	out, err := runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "invoke", "-device", "fw-1", "-method", "ping", "-connect-timeout", "30")
	if err != nil || !strings.Contains(out, "status 404") {
		t.Fatalf("unknown method: %v\n%s", err, out)
	}
	out, err = runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "c2d", "send", "-device", "fw-1", "-body", "hello", "-property", "k=v")
	if err != nil || !strings.Contains(out, "queued a message for fw-1") {
		t.Fatalf("c2d send: %v\n%s", err, out)
	}
	waitFor(t, func() error {
		if !strings.Contains(sim.out.String(), `msg="cloud-to-device message" device=fw-1 messageId="" body=hello`) {
			return fmt.Errorf("simdevice did not log the message")
		}
		return nil
	})
	out, err = runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "firmware", "-device", "fw-1", "-version", "2.1.0")
	if err != nil {
		t.Fatalf("invoker: %v\n%s", err, out)
	}
	for _, want := range []string{"firmwareUpdate on fw-1: status 200", "firmware: downloading", "firmware: applying", "fw-1 now runs firmware 2.1.0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
	tw, err := e.Service(t).Twin(context.Background(), "fw-1")
	if err != nil {
		t.Fatal(err)
	}
	fw := tw.Properties.Reported.Props["firmware"].(map[string]any)
	if fw["version"] != "2.1.0" || fw["status"] != "current" || tw.Properties.Reported.Props["rebootTime"] == nil {
		t.Fatalf("reported %v", tw.Properties.Reported.Props)
	}
}

// Ensure that a fleet of 200 simulated devices in one process registers,
// connects and answers a method each; then that a job reboots exactly the
// tagged devices and a second job updates their desired properties.
func TestE2EFleetAndJobs(t *testing.T) {
	bin := binaries(t)
	e := emulatortest.Start(t)
	const n = 200
	_, mqttPort, _ := net.SplitHostPort(e.MQTTAddr())
	startProcess(t, filepath.Join(bin, "simdevice"), nil, "-count", fmt.Sprint(n), "-service-connection-string", e.ServiceString().String(),
		"-gateway-host-name", "localhost:"+mqttPort, "-ca-file", e.CAFile(), "-reboot-delay", "200ms", "-telemetry-interval", "0")
	waitUntil(t, 90*time.Second, connected(e, n))
	svc := e.Service(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("sim-%d", i)
			res, err := svc.InvokeMethod(ctx, id, iothub.MethodRequest{MethodName: "firmwareUpdate", Payload: json.RawMessage(`{}`)})
			if err == nil && res.Status != 400 {
				err = fmt.Errorf("%s answered %d %s", id, res.Status, res.Payload)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	tagged := map[string]bool{}
	for i := 1; i <= n; i += 4 {
		id := fmt.Sprintf("sim-%d", i)
		tagged[id] = true
		if _, err := svc.UpdateTwin(ctx, id, iothub.NewTwinPatch(map[string]any{"reboot": true}, nil), ""); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "job", "reboot", "-id", "reboot-all", "-condition", "tags.reboot = true", "-output", "json")
	var j iothub.Job
	if err != nil || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatalf("job: %v\n%s", err, out)
	}
	if s := j.DeviceJobStatistics; j.Status != iothub.JobCompleted || s.DeviceCount != len(tagged) || s.SucceededCount != len(tagged) || s.FailedCount != 0 {
		t.Fatalf("reboot job %s", out)
	}
	waitFor(t, func() error {
		rows, err := svc.Query(ctx, "SELECT deviceId FROM devices WHERE IS_DEFINED(properties.reported.rebootTime)", 0)
		if err != nil {
			return err
		}
		if len(rows) != len(tagged) {
			return fmt.Errorf("%d devices reported a reboot, want %d", len(rows), len(tagged))
		}
		for _, r := range rows {
			var row struct{ DeviceID string }
			json.Unmarshal(r, &row)
			if !tagged[row.DeviceID] {
				return fmt.Errorf("untagged %s rebooted", row.DeviceID)
			}
		}
		return nil
	})
	out, err = runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "job", "twin", "-id", "interval", "-condition", "tags.reboot = true",
		"-desired", `{"telemetryInterval": 60}`, "-output", "json")
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.DeviceJobStatistics.SucceededCount != len(tagged) {
		t.Fatalf("twin job: %v\n%s", err, out)
	}
	waitFor(t, func() error {
		rows, err := svc.Query(ctx, "SELECT COUNT() AS n FROM devices WHERE properties.reported.telemetryInterval.ac = 200 AND properties.reported.telemetryInterval.value = 60", 0)
		if err != nil {
			return err
		}
		if string(rows[0]) != fmt.Sprintf(`{"n":%d}`, len(tagged)) {
			return fmt.Errorf("acknowledged: %s", rows[0])
		}
		return nil
	})

	// An automatic configuration reaches the same devices, and the
	// invoker follows it until every one has it.
	out, err = runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "config", "create", "-id", "slow-telemetry",
		"-condition", "tags.reboot = true", "-desired", `{"telemetryInterval": 120}`,
		"-metric", "acknowledged=SELECT deviceId FROM devices WHERE properties.reported.telemetryInterval.value = 120", "-output", "json")
	var c iothub.Configuration
	if err != nil || json.Unmarshal([]byte(out), &c) != nil || c.SystemMetrics.Results[iothub.MetricApplied] != int64(len(tagged)) {
		t.Fatalf("config: %v\n%s", err, out)
	}
	waitFor(t, func() error {
		out, err := runBin(t, filepath.Join(bin, "invoker"), serviceEnv(e), "config", "show", "-id", "slow-telemetry")
		if err != nil || !strings.Contains(out, fmt.Sprintf("acknowledged %d", len(tagged))) {
			return fmt.Errorf("config show: %v %s", err, out)
		}
		return nil
	})
}

// connected checks that n devices are connected.
func connected(e *emulatortest.Env, n int) func() error {
	return func() error {
		if got := e.Hub().ServiceStatistics().ConnectedDeviceCount; got < n {
			return fmt.Errorf("%d of %d devices connected", got, n)
		}
		return nil
	}
}

// waitFor retries check until it succeeds, failing after a minute.
func waitFor(t testing.TB, check func() error) { waitUntil(t, time.Minute, check) }

// waitUntil retries check until it succeeds, failing after timeout.
func waitUntil(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Ensure that docker-compose.yml only sets environment variables that are
// flags of the program its service runs, and runs commands that exist:
// there is no Docker engine here to try it.
func TestE2EComposeMatchesFlags(t *testing.T) {
	bin := binaries(t)
	compose, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var service, program string
	help := map[string]string{}
	for _, line := range strings.Split(string(compose), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    ") && strings.HasSuffix(trimmed, ":"):
			service, program = strings.TrimSuffix(trimmed, ":"), ""
		case strings.HasPrefix(trimmed, "image: "):
			service = "" // another project's image (Azurite): not ours to check
		case service != "" && strings.HasPrefix(trimmed, "command: ["):
			var cmd []string
			if err := json.Unmarshal([]byte(strings.TrimPrefix(trimmed, "command: ")), &cmd); err != nil {
				t.Fatalf("%s: command: %v", service, err)
			}
			program = cmd[0]
			args := append(cmd[1:], "-h")
			out, _ := exec.Command(filepath.Join(bin, program), args...).CombinedOutput()
			if !strings.Contains(string(out), "Usage of") {
				t.Fatalf("%s: %v is not a valid command:\n%s", service, cmd, out)
			}
			help[service] = string(out)
		case program != "" && strings.Contains(trimmed, ": ") && strings.ToUpper(strings.SplitN(trimmed, ":", 2)[0]) == strings.SplitN(trimmed, ":", 2)[0]:
			name := strings.SplitN(trimmed, ":", 2)[0]
			if !strings.Contains(help[service], "(env "+name+")") {
				t.Errorf("%s sets %s, which is not a flag of %s", service, name, program)
			}
		}
	}
	if len(help) != 3 {
		t.Fatalf("found commands for %d services, want 3", len(help))
	}
}
