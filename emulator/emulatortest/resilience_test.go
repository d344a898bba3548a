package emulatortest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Ensure that an emulated S1 hub throttles as Azure's table says, through
// the service API: twin updates burst to 50 (a one-second window) and the
// next is a 429 ThrottlingException with Retry-After; direct methods are
// metered in 4 KB, 40 meters a second; the refusals are counted. An F1
// hub's daily quota of 8,000 half-kilobyte messages runs out (403002), and
// a basic tier has no twins and no methods.
func TestTierThrottles(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	ctx := testCtx(t)
	svc := e.Service(t)
	cs := e.AddDevice(t, "tiered")
	dev := e.Dial(t, cs, iotdevice.Options{})
	dev.OnMethod("echo", func(_ context.Context, p json.RawMessage) (int, any) { return 200, nil })
	https := e.Dial(t, e.TransportString(cs, iotdevice.HTTPS), iotdevice.Options{Transport: iotdevice.HTTPS})
	if _, err := svc.SetTier(ctx, iothub.TierSettings{Tier: iothub.TierS1, Window: iothub.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}

	ok := 0
	var throttled *iothub.Error
	for i := 0; i < 500 && throttled == nil; i++ {
		_, err := svc.UpdateTwin(ctx, "tiered", iothub.NewTwinPatch(map[string]any{"n": i}, nil), "*")
		switch {
		case err == nil:
			ok++
		case errors.As(err, &throttled) && throttled.Code == iothub.ThrottlingException:
		default:
			t.Fatalf("twin update %d: %v", i, err)
		}
	}
	if throttled == nil || ok < 50 || throttled.RetryAfter < time.Second {
		t.Fatalf("%d twin updates went through, then %v (Retry-After %v); want at least 50, then a throttle with Retry-After", ok, throttled, throttled.RetryAfter)
	}

	big := json.RawMessage(fmt.Sprintf(`{"pad":%q}`, bytes.Repeat([]byte("x"), 39*1024))) // 10 meters of 4 KB
	calls, err := 0, error(nil)
	for ; calls < 20; calls++ {
		if _, err = svc.InvokeMethod(ctx, "tiered", iothub.MethodRequest{MethodName: "echo", Payload: big}); err != nil {
			break
		}
	}
	if iothub.CodeOf(err) != iothub.ThrottlingException || calls < 4 || calls > 8 {
		t.Fatalf("methods of 10 meters: %d went through, then %v; want about 4, then a throttle", calls, err)
	}
	tier, err := svc.Tier(ctx)
	if err != nil || tier.Tier != iothub.TierS1 || tier.Throttled["twinUpdate"] < 1 || tier.Throttled["method"] < 1 {
		t.Fatalf("tier %+v, %v", tier, err)
	}

	if _, err := svc.SetTier(ctx, iothub.TierSettings{Tier: iothub.TierF1}); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("m"), 200*1024) // 400 meters of 512 bytes
	sent := 0
	for ; sent < 30; sent++ {
		if err = https.SendEvent(ctx, body, nil); err != nil {
			break
		}
	}
	if iothub.CodeOf(err) != iothub.IotHubQuotaExceeded || sent != 20 {
		t.Fatalf("F1: %d messages of 200 KB, then %v; want 20, then IotHubQuotaExceeded", sent, err)
	}

	if _, err := svc.SetTier(ctx, iothub.TierSettings{Tier: iothub.TierB1}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Twin(ctx, "tiered"); iothub.CodeOf(err) != iothub.MethodNotAllowed {
		t.Fatalf("a twin on B1: %v", err)
	}
	if _, err := svc.InvokeMethod(ctx, "tiered", iothub.MethodRequest{MethodName: "echo", Payload: json.RawMessage(`1`)}); iothub.CodeOf(err) != iothub.MethodNotAllowed {
		t.Fatalf("a method on B1: %v", err)
	}
	if err := dev.SendEvent(ctx, []byte("telemetry works on B1"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Twin(ctx); iothub.CodeOf(err) != iothub.MethodNotAllowed {
		t.Fatalf("a device twin GET on B1: %v", err)
	}
	if _, err := svc.SetTier(ctx, iothub.TierSettings{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Twin(ctx, "tiered"); err != nil {
		t.Fatalf("with emulation off: %v", err)
	}
}

// Ensure that each fault does what it says through the public protocols
// and ends as it says: failed calls with the chosen error, a forced
// disconnect the device client recovers from, refused connections on
// every transport, a token expired early, delays, dropped messages and a
// restart, each listed with its hits; bad faults are refused.
func TestFaults(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t)
	ctx := testCtx(t)
	svc := e.Service(t)
	cs := e.AddDevice(t, "faulty")
	add := func(f iothub.Fault) iothub.Fault {
		t.Helper()
		out, err := svc.AddFault(ctx, f)
		if err != nil {
			t.Fatalf("add %+v: %v", f, err)
		}
		return out
	}

	f := add(iothub.Fault{Kind: iothub.FaultFail, Operation: iothub.OpTwinRead, Count: 2, ErrorCode: "ThrottlingException"})
	for i := range 2 {
		if _, err := svc.Twin(ctx, "faulty"); iothub.CodeOf(err) != iothub.ThrottlingException {
			t.Fatalf("read %d under the fault: %v", i, err)
		}
	}
	if _, err := svc.Twin(ctx, "faulty"); err != nil {
		t.Fatalf("after two failures: %v", err)
	}
	faults, _ := svc.Faults(ctx)
	if len(faults) != 1 || faults[0].ID != f.ID || faults[0].Hits != 2 || faults[0].Active {
		t.Fatalf("listed %+v", faults)
	}

	dev := e.Dial(t, cs, iotdevice.Options{})
	desired := make(chan int64, 4)
	dev.OnDesired(func(p map[string]any, v int64) { desired <- v })
	if f := add(iothub.Fault{Kind: iothub.FaultDisconnect, DeviceID: "faulty"}); f.Hits != 1 {
		t.Fatalf("disconnect closed %d connections", f.Hits)
	}
	eventually(t, "the device is back", func() error {
		if _, err := svc.UpdateTwin(ctx, "faulty", iothub.NewTwinPatch(nil, map[string]any{"k": time.Now().UnixMicro() % 1e9}), "*"); err != nil {
			return err
		}
		select {
		case <-desired:
			return nil
		case <-time.After(100 * time.Millisecond):
			return errors.New("no desired patch reached the device")
		}
	})
	dev.Close()

	outage := add(iothub.Fault{Kind: iothub.FaultRefuseConnects, DeviceID: "faulty", Duration: iothub.Duration(time.Hour)})
	for _, tr := range []iotdevice.Transport{iotdevice.MQTT, iotdevice.AMQP} {
		c, err := iotdevice.New(e.TransportString(cs, tr), iotdevice.Options{Transport: tr, CAFile: e.CAFile()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(ctx); err == nil {
			c.Close()
			t.Fatalf("%s connected during an outage", tr)
		}
	}
	h := e.Dial(t, e.TransportString(cs, iotdevice.HTTPS), iotdevice.Options{Transport: iotdevice.HTTPS})
	if err := h.SendEvent(ctx, []byte("x"), nil); iothub.CodeOf(err) != iothub.ServiceUnavailable {
		t.Fatalf("HTTPS during an outage: %v", err)
	}
	if err := svc.ClearFault(ctx, outage.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.SendEvent(ctx, []byte("x"), nil); err != nil {
		t.Fatalf("HTTPS after the outage: %v", err)
	}

	old, _ := sas.New(sas.DeviceResource(cs.HostName, "faulty", ""), "", cs.SharedAccessKey, time.Now().Add(30*time.Minute))
	mqttDev := e.Dial(t, cs, iotdevice.Options{})
	if f := add(iothub.Fault{Kind: iothub.FaultExpireToken, DeviceID: "faulty"}); f.Hits != 1 {
		t.Fatalf("expireToken closed %d connections", f.Hits)
	}
	if _, err := e.Hub().AuthenticateDevice("localhost", "faulty", "", old.String()); iothub.CodeOf(err) != iothub.IotHubUnauthorized {
		t.Fatalf("a token made before the fault: %v", err)
	}
	eventually(t, "a fresh token connects", func() error {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return mqttDev.SendEvent(sctx, []byte("with a fresh token"), nil)
	})
	mqttDev.Close()

	add(iothub.Fault{Kind: iothub.FaultDelay, Operation: iothub.OpQuery, Delay: iothub.Duration(300 * time.Millisecond), Count: 1})
	start := time.Now()
	if _, err := svc.Query(ctx, "SELECT * FROM devices", 10); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("a delayed query took %v", took)
	}

	add(iothub.Fault{Kind: iothub.FaultDrop, Operation: iothub.OpC2DSend, Count: 1})
	for _, body := range []string{"dropped", "kept"} {
		if err := svc.SendC2D(ctx, "faulty", iothub.CloudToDeviceMessage{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := svc.Device(ctx, "faulty"); err != nil || d.CloudToDeviceMessageCount != 1 {
		t.Fatalf("queued %d, %v; want the second message only", d.CloudToDeviceMessageCount, err)
	}

	other := e.Dial(t, e.AddDevice(t, "bystander"), iotdevice.Options{})
	again := e.Dial(t, cs, iotdevice.Options{})
	if f := add(iothub.Fault{Kind: iothub.FaultRestart}); f.Hits != 2 {
		t.Fatalf("restart closed %d connections, want 2", f.Hits)
	}
	for _, d := range []*iotdevice.Client{other, again} {
		eventually(t, "a device is back after the restart", func() error {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return d.SendEvent(sctx, []byte("after the restart"), topic.Properties{})
		})
	}

	for _, bad := range []iothub.Fault{{Kind: "meteor"}, {Kind: iothub.FaultFail}, {Kind: iothub.FaultFail, Operation: "teleport"},
		{Kind: iothub.FaultFail, Operation: iothub.OpQuery, ErrorCode: "Nope"}, {Kind: iothub.FaultDrop, Operation: iothub.OpQuery},
		{Kind: iothub.FaultRefuseConnects}, {Kind: iothub.FaultExpireToken}} {
		if _, err := svc.AddFault(ctx, bad); iothub.CodeOf(err) != iothub.ArgumentInvalid {
			t.Errorf("fault %+v: %v, want ArgumentInvalid", bad, err)
		}
	}
}

// manualClock is a hub clock that moves only when told, so a throttle's
// bucket refills exactly when a test says.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Ensure that every row of Azure's throttle table throttles through the
// protocol its callers use: on an S1 hub whose buckets hold one operation
// (a window of a nanosecond) and a clock that stands still, an
// operation's first call goes through, its second is refused with 429
// ThrottlingException and a Retry-After (or the protocol's equivalent),
// the refusal is counted under that operation alone, and once the clock
// has moved by the Retry-After the call goes through again. A job is
// never refused: its device operations queue at their own throttle.
// With a traffic-shaping queue, a call over the throttle waits instead.
func TestEveryThrottle(t *testing.T) {
	t.Parallel()
	clock := &manualClock{now: time.Now()}
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.Now = clock.Now }))
	ctx := testCtx(t)
	svc := e.Service(t)
	cs := e.AddDevice(t, "limited")
	connector := e.AddDevice(t, "connector") // not connected otherwise: a connect of limited would replace dev's
	for _, id := range []string{"job-a", "job-b", "job-c"} {
		e.AddDevice(t, id)
	}
	dev := e.Dial(t, cs, iotdevice.Options{})
	dev.OnMethod("echo", func(_ context.Context, p json.RawMessage) (int, any) { return 200, nil })
	https := e.Dial(t, e.TransportString(cs, iotdevice.HTTPS), iotdevice.Options{Transport: iotdevice.HTTPS, PollInterval: time.Hour})
	// deviceHTTPS is a device's HTTPS request, answered as an *iothub.Error
	// when it is not 2xx.
	limited := httpDevice{t: t, e: e, cs: cs, http: e.HTTPClient()}
	deviceHTTPS := func(method, path string) error {
		res := limited.do(method, path, "", map[string]string{"Content-Type": "application/json"}, []byte(`{"blobName":"b.txt"}`))
		if res.StatusCode < 300 {
			return nil
		}
		body, _ := io.ReadAll(res.Body)
		return iothub.ParseErrorResponse(res.StatusCode, res.Header, body)
	}
	connect := func(tr iotdevice.Transport) func() error {
		return func() error {
			c, err := iotdevice.New(e.TransportString(connector, tr), iotdevice.Options{Transport: tr, CAFile: e.CAFile()})
			if err != nil {
				return err
			}
			defer c.Close()
			return c.Connect(ctx)
		}
	}
	small := iothub.MethodRequest{MethodName: "echo", Payload: json.RawMessage(`1`)}
	rows := []struct {
		op   iothub.Operation
		call func() error
		// throttled recognizes a refusal without a Retry-After (nil:
		// 429 ThrottlingException with one).
		throttled func(error) bool
	}{
		{iothub.OpRegistry, func() error { _, err := svc.Device(ctx, "limited"); return err }, nil},
		{iothub.OpQuery, func() error { _, err := svc.Query(ctx, "SELECT * FROM devices", 10); return err }, nil},
		{iothub.OpTwinRead, func() error { _, err := svc.Twin(ctx, "limited"); return err }, nil},
		{iothub.OpTwinUpdate, func() error {
			_, err := svc.UpdateTwin(ctx, "limited", iothub.NewTwinPatch(map[string]any{"k": 1}, nil), "*")
			return err
		}, nil},
		{iothub.OpMethod, func() error { _, err := svc.InvokeMethod(ctx, "limited", small); return err }, nil},
		{iothub.OpJobs, func() error { _, err := svc.Jobs(ctx, "", ""); return err }, nil},
		{iothub.OpConfigurations, func() error { _, err := svc.Configurations(ctx, 0); return err }, nil},
		// AMQP rejects a send with its error's condition, and no Retry-After.
		{iothub.OpC2DSend, func() error { return svc.SendC2D(ctx, "limited", iothub.CloudToDeviceMessage{Body: "hi"}) },
			func(err error) bool { return iothub.CodeOf(err) == iothub.ThrottlingException }},
		{iothub.OpD2C, func() error { return https.SendEvent(ctx, []byte("d2c"), nil) }, nil},
		{iothub.OpC2DReceive, func() error { return deviceHTTPS(http.MethodGet, "/devices/limited/messages/devicebound") }, nil},
		{iothub.OpFileUpload, func() error {
			// No storage is configured: an admitted upload is 400.
			if err := deviceHTTPS(http.MethodPost, "/devices/limited/files"); iothub.CodeOf(err) != iothub.ArgumentInvalid {
				return err
			}
			return nil
		}, nil},
		{iothub.OpConnect, connect(iotdevice.MQTT), func(err error) bool { return err != nil }},
		{iothub.OpConnect, connect(iotdevice.AMQP), func(err error) bool { return err != nil }},
	}
	if _, err := svc.SetTier(ctx, iothub.TierSettings{Tier: iothub.TierS1, Window: iothub.Duration(time.Nanosecond)}); err != nil {
		t.Fatal(err)
	}
	refused := map[string]int64{}
	for _, row := range rows {
		clock.Advance(time.Minute) // every bucket full again
		if err := row.call(); err != nil {
			t.Fatalf("%s, first call: %v", row.op, err)
		}
		err := row.call()
		var he *iothub.Error
		switch {
		case row.throttled != nil:
			if !row.throttled(err) {
				t.Fatalf("%s, second call: %v; want it refused", row.op, err)
			}
		case !errors.As(err, &he) || he.Code != iothub.ThrottlingException || he.RetryAfter <= 0:
			t.Fatalf("%s, second call: %v; want 429 ThrottlingException with a Retry-After", row.op, err)
		}
		refused[string(row.op)]++
		tier, err := svc.Tier(ctx)
		if err != nil || !maps.Equal(tier.Throttled, refused) {
			t.Fatalf("after %s: refusals %v, %v; want %v", row.op, tier.Throttled, err, refused)
		}
		wait := time.Minute
		if he != nil {
			wait = he.RetryAfter
		}
		clock.Advance(wait)
		if err := row.call(); err != nil {
			t.Fatalf("%s after the Retry-After: %v", row.op, err)
		}
	}

	job, err := svc.ScheduleJob(ctx, iothub.Job{JobID: "paced", Type: iothub.JobScheduleUpdateTwin, QueryCondition: "deviceId IN ['job-a', 'job-b', 'job-c']",
		UpdateTwin: &iothub.TwinPatch{ETag: "*", Tags: map[string]any{"paced": true}}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the paced job completes", func() error {
		// Watched in the hub: a poll through the API would spend the jobs
		// bucket, and moving the clock to refill it would refill the
		// job's own.
		j, err := e.Hub().Job(job.JobID)
		if err != nil {
			return err
		}
		if j.Status != iothub.JobCompleted || j.DeviceJobStatistics == nil || j.DeviceJobStatistics.SucceededCount != 3 {
			return fmt.Errorf("job %s, %+v", j.Status, j.DeviceJobStatistics)
		}
		return nil
	})
	if tier, err := svc.Tier(ctx); err != nil || tier.Shaped["jobDevice"] != 2 || tier.Throttled["jobDevice"] != 0 {
		t.Fatalf("a job of three devices with one token: shaped %v, refused %v, %v; want two queued, none refused", tier.Shaped, tier.Throttled, err)
	}

	clock.Advance(time.Minute)
	if _, err := svc.SetTier(ctx, iothub.TierSettings{Tier: iothub.TierS1, Window: iothub.Duration(time.Nanosecond), Queue: iothub.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	update := rows[3].call
	for i := range 3 {
		if err := update(); err != nil {
			t.Fatalf("twin update %d with a queue of a second: %v", i, err)
		}
	}
	if tier, err := svc.Tier(ctx); err != nil || tier.Shaped["twinUpdate"] != 2 || len(tier.Throttled) != 0 {
		t.Fatalf("shaped %v, refused %v, %v; want two twin updates queued and none refused", tier.Shaped, tier.Throttled, err)
	}
}
