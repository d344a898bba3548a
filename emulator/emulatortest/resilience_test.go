package emulatortest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
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
