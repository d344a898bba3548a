package emulatortest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// Ensure that a device that stops reading its socket stalls nobody: every
// service update of its twin is answered while its notifications pile up,
// it is disconnected once a write to it has waited the write timeout, and
// other devices' method calls keep working throughout.
func TestStalledDevice(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.WithNoSync(), emulatortest.WithConfig(func(c *server.Config) {
		c.WriteTimeout = 200 * time.Millisecond
	}))
	// The stalled device subscribes to desired notifications and then
	// reads nothing.
	stalled := dialRawDevice(t, e, "stalled", "$iothub/twin/PATCH/properties/desired/#")
	t.Cleanup(func() { stalled.conn.Close() })
	healthy := dialRawDevice(t, e, "healthy", "$iothub/methods/POST/#")
	go healthy.serve()
	t.Cleanup(func() { healthy.conn.Close() })
	svc := e.Service(t)

	value := strings.Repeat("x", 4000) // the longest a string may be
	disconnected := func() bool {
		d, err := svc.Device(context.Background(), "stalled")
		return err == nil && d.ConnectionState == iothub.Disconnected
	}
	// Enough notifications to fill any socket buffer; each update must be
	// answered without waiting on the device.
	for i := 0; i < 2000 && !disconnected(); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		patch := iothub.TwinPatch{Properties: &iothub.PatchProperties{Desired: iothub.TwinCollection{Props: map[string]any{"a": value, "b": value, "c": value, "d": value, "n": i}}}}
		_, err := svc.UpdateTwin(ctx, "stalled", patch, "*")
		cancel()
		if err != nil {
			t.Fatalf("update %d of the stalled device's twin: %v", i, err)
		}
		if i%50 == 0 {
			callHealthy(t, svc)
		}
	}
	eventually(t, "the stalled device is disconnected", func() error {
		if !disconnected() {
			return errors.New("still connected")
		}
		return nil
	})
	callHealthy(t, svc)
}

func callHealthy(t *testing.T, svc interface {
	InvokeMethod(context.Context, string, iothub.MethodRequest) (iothub.MethodResult, error)
}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	five := 5
	res, err := svc.InvokeMethod(ctx, "healthy", iothub.MethodRequest{MethodName: "ping", Payload: json.RawMessage(`{"a":1}`), ResponseTimeoutInSeconds: &five})
	if err != nil || res.Status != 200 {
		t.Fatalf("method call to the healthy device: %+v, %v", res, err)
	}
}
