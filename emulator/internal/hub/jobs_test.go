package hub_test

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// answeringLink answers every method request with 200 and counts them.
type answeringLink struct {
	*fakeLink
	calls atomic.Int32
}

func attachAnswering(t *testing.T, h *testHub, id string, answer bool) *answeringLink {
	t.Helper()
	l := &answeringLink{fakeLink: newLink()}
	c, _, err := h.Attach(ctx, id, l, true)
	if err != nil {
		t.Fatal(err)
	}
	h.Subscribe(c, hub.SubMethods)
	go func() {
		for m := range l.methods {
			l.calls.Add(1)
			if answer {
				c.CompleteMethod(m[1], 200, []byte(`{"rebooting":true}`))
			}
		}
	}()
	return l
}

func methodJob(id, cond string) iothub.Job {
	five := 5
	return iothub.Job{JobID: id, Type: iothub.JobScheduleDeviceMethod, QueryCondition: cond,
		CloudToDeviceMethod: &iothub.MethodRequest{MethodName: "rebootDevice", ResponseTimeoutInSeconds: &five}}
}

func waitJob(t *testing.T, h *testHub, id string, want iothub.JobStatus) iothub.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := h.Job(id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == want {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s, want %s: %s", id, j.Status, want, jsonOf(j))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ensure that a method job reaches exactly the devices its condition
// selects and records each outcome.
func TestMethodJob(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	links := map[string]*answeringLink{}
	for _, id := range []string{"a", "b", "c"} {
		mustDevice(t, h, id)
		links[id] = attachAnswering(t, h, id, true)
	}
	for _, id := range []string{"a", "c"} {
		h.UpdateTwin(ctx, id, hub.TwinPatch{Tags: obj(t, `{"reboot":true}`)}, "", false)
	}
	j, err := h.ScheduleJob(ctx, methodJob("j1", "tags.reboot = true"))
	if err != nil || j.Status != iothub.JobQueued || j.StartTime == nil {
		t.Fatalf("scheduled %s, %v", jsonOf(j), err)
	}
	j = waitJob(t, h, "j1", iothub.JobCompleted)
	if s := j.DeviceJobStatistics; s.DeviceCount != 2 || s.SucceededCount != 2 || s.FailedCount != 0 || j.EndTime == nil {
		t.Fatalf("statistics %+v", s)
	}
	if links["a"].calls.Load() != 1 || links["b"].calls.Load() != 0 || links["c"].calls.Load() != 1 {
		t.Fatalf("calls a=%d b=%d c=%d", links["a"].calls.Load(), links["b"].calls.Load(), links["c"].calls.Load())
	}
	res, err := h.Query("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND devices.jobs.status = 'completed'")
	if err != nil || len(res.Rows) != 2 || res.ItemType != iothub.ItemDeviceJob {
		t.Fatalf("devices.jobs: %s, %v", jsonOf(res), err)
	}
	dj := res.Rows[0].(iothub.DeviceJob)
	if dj.Outcome == nil || dj.Outcome.DeviceMethodResponse.Status != 200 || string(dj.Outcome.DeviceMethodResponse.Payload) != `{"rebooting":true}` {
		t.Fatalf("outcome %s", jsonOf(dj))
	}
	_, err = h.ScheduleJob(ctx, methodJob("j1", "*"))
	wantCode(t, err, iothub.JobAlreadyExists)
	if got := h.Jobs("ScheduleDeviceMethod", "COMPLETED"); len(got) != 1 {
		t.Fatalf("Jobs filter: %d", len(got))
	}
}

func TestTwinJob(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	for _, id := range []string{"a", "b"} {
		mustDevice(t, h, id)
	}
	h.UpdateTwin(ctx, "b", hub.TwinPatch{Tags: obj(t, `{"building":"43"}`)}, "", false)
	p := iothub.NewTwinPatch(map[string]any{"floor": json.Number("2")}, map[string]any{"telemetryInterval": json.Number("30")})
	p.ETag = "*"
	_, err := h.ScheduleJob(ctx, iothub.Job{JobID: "t1", Type: iothub.JobScheduleUpdateTwin, QueryCondition: "tags.building = '43'", UpdateTwin: &p})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, h, "t1", iothub.JobCompleted)
	if j.DeviceJobStatistics.SucceededCount != 1 {
		t.Fatalf("statistics %+v", j.DeviceJobStatistics)
	}
	b, _ := h.Twin("b")
	a, _ := h.Twin("a")
	if b.Properties.Desired.Props["telemetryInterval"] != json.Number("30") || b.Tags["floor"] != json.Number("2") || len(a.Properties.Desired.Props) != 0 {
		t.Fatalf("b %s\na %s", jsonOf(b), jsonOf(a))
	}
}

func TestJobValidation(t *testing.T) {
	h := mustOpen(t, hub.Options{MaxConcurrentJobs: 1})
	bad := methodJob("x", "deviceId IN ('a')")
	_, err := h.ScheduleJob(ctx, bad)
	wantCode(t, err, iothub.ArgumentInvalid)
	_, err = h.ScheduleJob(ctx, iothub.Job{JobID: "x", Type: "export", QueryCondition: "*"})
	wantCode(t, err, iothub.ArgumentInvalid)
	_, err = h.ScheduleJob(ctx, iothub.Job{JobID: "x", Type: iothub.JobScheduleDeviceMethod, QueryCondition: "*"})
	wantCode(t, err, iothub.ArgumentNull)
	later := iothub.NewTime(time.Now().Add(time.Hour))
	j := methodJob("later", "*")
	j.StartTime = &later
	if _, err := h.ScheduleJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	waitJob(t, h, "later", iothub.JobScheduled)
	_, err = h.ScheduleJob(ctx, methodJob("second", "*"))
	wantCode(t, err, iothub.ThrottlingMaxActiveJobCountExceeded)
	if c, err := h.CancelJob("later"); err != nil || c.Status != iothub.JobCancelled {
		t.Fatalf("cancel: %s, %v", jsonOf(c), err)
	}
	if _, err := h.ScheduleJob(ctx, methodJob("second", "*")); err != nil {
		t.Fatalf("after a cancel the limit still applies: %v", err)
	}
	_, err = h.Job("nope")
	wantCode(t, err, iothub.JobNotFound)
}

// Ensure that a job scheduled for later survives a restart and runs, that
// a device whose call was in flight at a restart runs again (at least
// once, as Azure's jobs), and that a device that had completed does not.
func TestJobsAcrossRestart(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	mustDevice(t, h, "a")
	mustDevice(t, h, "hang")
	attachAnswering(t, h, "a", true)
	hang := attachAnswering(t, h, "hang", false)
	if _, err := h.ScheduleJob(ctx, methodJob("now", "*")); err != nil {
		t.Fatal(err)
	}
	soon := iothub.NewTime(time.Now().Add(500 * time.Millisecond))
	p := iothub.NewTwinPatch(nil, map[string]any{"x": "y"})
	if _, err := h.ScheduleJob(ctx, iothub.Job{JobID: "later", Type: iothub.JobScheduleUpdateTwin, QueryCondition: "deviceId = 'a'", UpdateTwin: &p, StartTime: &soon}); err != nil {
		t.Fatal(err)
	}
	for hang.calls.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	h.reopen(t)
	a := attachAnswering(t, h, "a", true)
	hang2 := attachAnswering(t, h, "hang", true)
	j := waitJob(t, h, "now", iothub.JobCompleted)
	if s := j.DeviceJobStatistics; s.DeviceCount != 2 || s.SucceededCount != 2 {
		t.Fatalf("statistics after restart %+v; want both devices succeeded", s)
	}
	waitJob(t, h, "later", iothub.JobCompleted)
	tw, _ := h.Twin("a")
	if tw.Properties.Desired.Props["x"] != "y" {
		t.Fatalf("the later job did not run after the restart: %s", jsonOf(tw))
	}
	if hang2.calls.Load() != 1 || a.calls.Load() != 0 {
		t.Fatalf("after the restart: the interrupted device was called %d times (want 1), the completed one %d (want 0)", hang2.calls.Load(), a.calls.Load())
	}
}

// Ensure that a job stopped while it was resolving its devices (a queued
// job with some device records on disk, as a crash could leave) selects
// its devices again, all of them, rather than run with part of them.
func TestJobResolvedWhole(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	for _, id := range []string{"r1", "r2", "r3"} {
		mustDevice(t, h, id)
	}
	p := iothub.NewTwinPatch(nil, map[string]any{"resolved": "whole"})
	now := iothub.NewTime(time.Now())
	j := iothub.Job{JobID: "half", Type: iothub.JobScheduleUpdateTwin, QueryCondition: "*", UpdateTwin: &p, Status: iothub.JobQueued,
		StartTime: &now, MaxExecutionTimeInSeconds: 3600, CreatedTime: &now}
	if err := h.store.PutJob(&j); err != nil {
		t.Fatal(err)
	}
	if err := h.store.PutDeviceJob(&iothub.DeviceJob{JobID: "half", DeviceID: "r1", JobType: j.Type, Status: iothub.DeviceJobPending}); err != nil {
		t.Fatal(err)
	}
	h.reopen(t)
	done := waitJob(t, h, "half", iothub.JobCompleted)
	if s := done.DeviceJobStatistics; s.DeviceCount != 3 || s.SucceededCount != 3 {
		t.Fatalf("statistics %+v; want all three devices", s)
	}
	for _, id := range []string{"r1", "r2", "r3"} {
		if tw, _ := h.Twin(id); tw.Properties.Desired.Props["resolved"] != "whole" {
			t.Fatalf("%s was not updated", id)
		}
	}
}
