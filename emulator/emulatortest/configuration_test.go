package emulatortest_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/server"
)

// eventually retries check until it returns nil or ten seconds pass.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ensure that automatic device configurations apply their content to the
// desired properties of the twins they target, the highest priority
// winning, once; that the twins and metrics say so; and that the content
// is immutable (service-api §9).
func TestConfigurations(t *testing.T) {
	t.Parallel()
	e := emulatortest.Start(t, emulatortest.WithConfig(func(c *server.Config) { c.ConfigurationInterval = 50 * time.Millisecond }))
	svc := e.Service(t)
	ctx := testCtx(t)
	for id, env := range map[string]string{"prod-1": "prod", "prod-2": "prod", "dev-1": "dev"} {
		e.AddDevice(t, id)
		tw, _ := svc.Twin(ctx, id)
		if _, err := svc.UpdateTwin(ctx, id, iothub.NewTwinPatch(map[string]any{"env": env}, nil), tw.ETag); err != nil {
			t.Fatal(err)
		}
	}
	dev := e.Dial(t, e.AddDevice(t, "late"), iotdevice.Options{})
	notified := make(chan string, 4)
	dev.OnDesired(func(p map[string]any, v int64) {
		b, _ := json.Marshal(p)
		notified <- string(b)
	})

	base := iothub.Configuration{ID: "chiller", Priority: 10, TargetCondition: "tags.env = 'prod'",
		Content: iothub.ConfigurationContent{DeviceContent: map[string]any{"properties.desired.chiller": map[string]any{"temp": 66}}},
		Metrics: iothub.ConfigurationMetrics{Queries: map[string]string{"reportedOK": "SELECT deviceId FROM devices WHERE properties.reported.chiller.status = 'ok'"}}}
	created, err := svc.CreateConfiguration(ctx, base)
	if err != nil || created.ETag == "" || created.SchemaVersion != "1.0" {
		t.Fatalf("create: %+v, %v", created, err)
	}
	_, err = svc.CreateConfiguration(ctx, base)
	wantCode(t, err, iothub.ConfigurationAlreadyExists)
	urgent := base
	urgent.ID, urgent.Priority, urgent.TargetCondition = "chiller-urgent", 20, "deviceId = 'prod-2'"
	urgent.Content.DeviceContent = map[string]any{"properties.desired.chiller.temp": 50}
	if _, err := svc.CreateConfiguration(ctx, urgent); err != nil {
		t.Fatal(err)
	}

	eventually(t, "configurations applied", func() error {
		for id, want := range map[string]string{"prod-1": `{"temp":66}|chiller:Applied`, "prod-2": `{"temp":50}|chiller:Targeted chiller-urgent:Applied`, "dev-1": `null|`} {
			tw, err := svc.Twin(ctx, id)
			if err != nil {
				return err
			}
			b, _ := json.Marshal(tw.Properties.Desired.Props["chiller"])
			got := string(b) + "|"
			for _, c := range []string{"chiller", "chiller-urgent"} {
				if st, ok := tw.Configurations[c]; ok {
					got += fmt.Sprintf("%s:%s ", c, st.Status)
				}
			}
			if got = trimSpace(got); got != want {
				return fmt.Errorf("%s: %s, want %s", id, got, want)
			}
		}
		return nil
	})
	c, err := svc.Configuration(ctx, "chiller")
	if err != nil || c.SystemMetrics.Results[iothub.MetricTargeted] != 2 || c.SystemMetrics.Results[iothub.MetricApplied] != 1 || c.Metrics.Results["reportedOK"] != 0 {
		t.Fatalf("metrics: %+v, %v", c, err)
	}
	rows, err := svc.Query(ctx, "SELECT deviceId FROM devices WHERE configurations.[[chiller]].status = 'Applied'", 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("query by configuration status: %s, %v", rows, err)
	}

	// A device that comes to match is configured, and told.
	tw, _ := svc.Twin(ctx, "late")
	if _, err := svc.UpdateTwin(ctx, "late", iothub.NewTwinPatch(map[string]any{"env": "prod"}, nil), tw.ETag); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-notified:
		if got != `{"chiller":{"temp":66}}` {
			t.Fatalf("desired notification %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no desired notification for a newly targeted device")
	}

	// Content is applied once: a later change of the twin stays.
	tw, _ = svc.Twin(ctx, "prod-1")
	if _, err := svc.UpdateTwin(ctx, "prod-1", iothub.NewTwinPatch(nil, map[string]any{"chiller": map[string]any{"temp": 70}}), tw.ETag); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // several evaluation rounds
	if tw, _ := svc.Twin(ctx, "prod-1"); fmt.Sprint(tw.Properties.Desired.Props["chiller"]) != "map[temp:70]" {
		t.Fatalf("the configuration was applied again: %v", tw.Properties.Desired.Props["chiller"])
	}

	// Only target condition, priority, labels and metrics may change.
	changed := created
	changed.Content.DeviceContent = map[string]any{"properties.desired.chiller": map[string]any{"temp": 1}}
	_, err = svc.UpdateConfiguration(ctx, changed, created.ETag)
	wantCode(t, err, iothub.CannotModifyImmutableConfigurationContent)
	_, err = svc.UpdateConfiguration(ctx, base, "stale")
	wantCode(t, err, iothub.PreconditionFailed)
	base.Priority = 30
	updated, err := svc.UpdateConfiguration(ctx, base, created.ETag)
	if err != nil || updated.Priority != 30 || updated.ETag == created.ETag {
		t.Fatalf("update: %+v, %v", updated, err)
	}

	// Bad configurations are refused whole.
	for code, bad := range map[iothub.ErrorCode]iothub.Configuration{
		iothub.InvalidConfigurationTargetCondition:    {ID: "b1", TargetCondition: "tags.env = ", Content: base.Content},
		iothub.InvalidConfigurationContent:            {ID: "b2", TargetCondition: "*", Content: iothub.ConfigurationContent{DeviceContent: map[string]any{"tags.env": "x"}}},
		iothub.InvalidConfigurationCustomMetricsQuery: {ID: "b3", TargetCondition: "*", Content: base.Content, Metrics: iothub.ConfigurationMetrics{Queries: map[string]string{"m": "SELEC"}}},
	} {
		_, err := svc.CreateConfiguration(ctx, bad)
		wantCode(t, err, code)
	}
	res, err := svc.TestConfigurationQueries(ctx, iothub.ConfigurationQueriesTest{TargetCondition: "tags.env = 'prod'",
		CustomMetricQueries: map[string]string{"good": "SELECT deviceId FROM devices", "bad": "SELECT FROM"}})
	if err != nil || res.TargetConditionError != "" || res.CustomMetricQueryErrors["bad"] == "" || res.CustomMetricQueryErrors["good"] != "" {
		t.Fatalf("testQueries: %+v, %v", res, err)
	}

	// When a configuration goes, the next one in line applies; the twins
	// stop listing it. Configurations survive a restart.
	if err := svc.DeleteConfiguration(ctx, "chiller-urgent"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the next configuration applied", func() error {
		tw, _ := svc.Twin(ctx, "prod-2")
		if _, ok := tw.Configurations["chiller-urgent"]; ok || tw.Configurations["chiller"].Status != iothub.ConfigurationApplied ||
			fmt.Sprint(tw.Properties.Desired.Props["chiller"]) != "map[temp:66]" {
			return fmt.Errorf("twin after delete: %v %v", tw.Configurations, tw.Properties.Desired.Props)
		}
		return nil
	})
	e2 := e.Restart(t)
	svc2 := e2.Service(t)
	list, err := svc2.Configurations(ctx, 0)
	if err != nil || len(list) != 1 || list[0].ID != "chiller" || list[0].Priority != 30 {
		t.Fatalf("after restart: %+v, %v", list, err)
	}

	// Deleting the last one leaves the desired properties it set.
	if err := svc2.DeleteConfiguration(ctx, "chiller"); err != nil {
		t.Fatal(err)
	}
	_, err = svc2.Configuration(ctx, "chiller")
	wantCode(t, err, iothub.ConfigurationNotFound)
	eventually(t, "status cleared", func() error {
		tw, _ := svc2.Twin(ctx, "prod-2")
		if len(tw.Configurations) != 0 || fmt.Sprint(tw.Properties.Desired.Props["chiller"]) != "map[temp:66]" {
			return fmt.Errorf("twin after the last delete: %v %v", tw.Configurations, tw.Properties.Desired.Props)
		}
		return nil
	})
}

func trimSpace(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}
