package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/query"
)

// jobWorkers is how many devices a job works on at once.
const jobWorkers = 16

// job is a scheduled job in memory.
type job struct {
	mu      sync.Mutex
	j       iothub.Job                   // guarded by mu
	devices map[string]*iothub.DeviceJob // guarded by mu
	order   []string                     // guarded by mu; device ids in run order
	cancel  context.CancelFunc           // set when the job runs
}

// snapshot returns the job with its current statistics.
func (jb *job) snapshot() iothub.Job {
	jb.mu.Lock()
	defer jb.mu.Unlock()
	j := jb.j
	if j.CloudToDeviceMethod != nil {
		m := *j.CloudToDeviceMethod
		j.CloudToDeviceMethod = &m
	}
	st := iothub.JobStatistics{DeviceCount: len(jb.order)}
	for _, id := range jb.order {
		switch jb.devices[id].Status {
		case iothub.DeviceJobCompleted:
			st.SucceededCount++
		case iothub.DeviceJobFailed, iothub.DeviceJobCanceled:
			st.FailedCount++
		case iothub.DeviceJobRunning:
			st.RunningCount++
		default:
			st.PendingCount++
		}
	}
	j.DeviceJobStatistics = &st
	return j
}

// ScheduleJob creates a job (PUT /jobs/v2/{id}, service-api §7.1) and
// returns it queued; it runs at its start time.
func (h *Hub) ScheduleJob(ctx context.Context, j iothub.Job) (iothub.Job, error) {
	if err := h.validateJob(&j); err != nil {
		return iothub.Job{}, err
	}
	h.jobMu.Lock()
	defer h.jobMu.Unlock()
	if _, ok := h.jobs[j.JobID]; ok {
		return iothub.Job{}, iothub.Errorf(iothub.JobAlreadyExists, "A job with ID '%s' already exists.", j.JobID)
	}
	active := 0
	for _, other := range h.jobs {
		if !other.snapshot().Status.Terminal() {
			active++
		}
	}
	if active >= h.opts.MaxConcurrentJobs {
		return iothub.Job{}, iothub.Errorf(iothub.ThrottlingMaxActiveJobCountExceeded,
			"The maximum number of active jobs (%d) has been reached; wait for one to finish.", h.opts.MaxConcurrentJobs)
	}
	now := iothub.NewTime(h.now())
	j.Status, j.CreatedTime, j.EndTime, j.DeviceJobStatistics = iothub.JobQueued, &now, nil, nil
	if err := h.svcStore.PutJob(&j); err != nil {
		return iothub.Job{}, iothub.Errorf(iothub.ServerError, "the job could not be stored")
	}
	jb := &job{j: j, devices: map[string]*iothub.DeviceJob{}}
	h.jobs[j.JobID] = jb
	created := jb.snapshot() // as created: the job may finish before the caller answers
	h.startJobLocked(jb)
	h.log.Info("job scheduled", "job", j.JobID, "type", j.Type, "condition", j.QueryCondition, "start", j.StartTime.String())
	return created, nil
}

func (h *Hub) validateJob(j *iothub.Job) error {
	if !iothub.ValidID(j.JobID) {
		return iothub.Errorf(iothub.ArgumentInvalid, "jobId %q is invalid", j.JobID)
	}
	switch j.Type {
	case iothub.JobScheduleDeviceMethod:
		if j.CloudToDeviceMethod == nil {
			return iothub.Errorf(iothub.ArgumentNull, "a scheduleDeviceMethod job needs cloudToDeviceMethod")
		}
		if err := j.CloudToDeviceMethod.Validate(); err != nil {
			return err
		}
	case iothub.JobScheduleUpdateTwin:
		if j.UpdateTwin == nil {
			return iothub.Errorf(iothub.ArgumentNull, "a scheduleUpdateTwin job needs updateTwin")
		}
		if err := iothub.ValidatePatch(j.UpdateTwin.Tags); err != nil {
			return err
		}
		if err := iothub.ValidatePatch(j.UpdateTwin.DesiredProps()); err != nil {
			return err
		}
	default:
		return iothub.Errorf(iothub.ArgumentInvalid, "job type %q is not supported; use scheduleDeviceMethod or scheduleUpdateTwin", j.Type)
	}
	if strings.TrimSpace(j.QueryCondition) == "" {
		return iothub.Errorf(iothub.ArgumentNull, "queryCondition is required")
	}
	if _, err := query.ParseCondition(j.QueryCondition); err != nil {
		return invalidQuery(err)
	}
	if j.MaxExecutionTimeInSeconds <= 0 {
		j.MaxExecutionTimeInSeconds = 3600
	}
	if j.StartTime == nil || j.StartTime.Before(h.now()) {
		// Node sends null and C# 0001-01-01 when no start is given: now.
		now := iothub.NewTime(h.now())
		j.StartTime = &now
	}
	return nil
}

// Job returns a job (GET /jobs/v2/{id}).
func (h *Hub) Job(id string) (iothub.Job, error) {
	jb, err := h.job(id)
	if err != nil {
		return iothub.Job{}, err
	}
	return jb.snapshot(), nil
}

// jobList returns every job, in no particular order.
func (h *Hub) jobList() []*job {
	h.jobMu.Lock()
	defer h.jobMu.Unlock()
	list := make([]*job, 0, len(h.jobs))
	for _, jb := range h.jobs {
		list = append(list, jb)
	}
	return list
}

func (h *Hub) job(id string) (*job, error) {
	h.jobMu.Lock()
	jb := h.jobs[id]
	h.jobMu.Unlock()
	if jb == nil {
		return nil, iothub.Errorf(iothub.JobNotFound, "Job with ID '%s' not found", id)
	}
	return jb, nil
}

// Jobs lists jobs, optionally of one type and status, compared
// case-insensitively as C# sends PascalCase (service-api §7.2).
func (h *Hub) Jobs(jobType, status string) []iothub.Job {
	var out []iothub.Job
	for _, jb := range h.jobList() {
		j := jb.snapshot()
		if (jobType == "" || strings.EqualFold(jobType, string(j.Type))) && (status == "" || strings.EqualFold(status, string(j.Status))) {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedTime.Before(out[b].CreatedTime.Time) })
	return out
}

// CancelJob cancels a job that has not finished; its pending devices become
// canceled.
func (h *Hub) CancelJob(id string) (iothub.Job, error) {
	jb, err := h.job(id)
	if err != nil {
		return iothub.Job{}, err
	}
	jb.mu.Lock()
	terminal := jb.j.Status.Terminal()
	cancel := jb.cancel
	jb.mu.Unlock()
	if !terminal {
		h.finishJob(jb, iothub.JobCancelled, "")
		if cancel != nil {
			cancel()
		}
	}
	return jb.snapshot(), nil
}

// Start resumes the jobs that had not finished when the hub last stopped,
// and starts applying configurations. Devices that were running a job at
// the stop run again: at least once, as Azure's jobs are.
func (h *Hub) Start() error {
	h.startConfigurations()
	err := h.svcStore.LoadJobs(func(j iothub.Job, djs []iothub.DeviceJob) error {
		jb := &job{j: j, devices: map[string]*iothub.DeviceJob{}}
		sort.Slice(djs, func(a, b int) bool { return djs[a].DeviceID < djs[b].DeviceID })
		for i := range djs {
			dj := djs[i]
			jb.devices[dj.DeviceID] = &dj
			jb.order = append(jb.order, dj.DeviceID)
		}
		h.jobMu.Lock()
		h.jobs[j.JobID] = jb
		h.jobMu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("load jobs: %w", err)
	}
	h.jobMu.Lock()
	defer h.jobMu.Unlock()
	for _, jb := range h.jobs {
		jb.mu.Lock()
		terminal := jb.j.Status.Terminal()
		for _, id := range jb.order {
			if dj := jb.devices[id]; dj.Status == iothub.DeviceJobRunning && !terminal {
				// Interrupted: run again. A twin update is idempotent; a
				// method may be called twice, as Azure's at-least-once
				// job semantics allow.
				dj.Status = iothub.DeviceJobPending
				h.putDeviceJobLocked(dj)
			}
		}
		jb.mu.Unlock()
		if !terminal {
			h.startJobLocked(jb)
		}
	}
	return nil
}

// Close stops running jobs (they resume at the next Start) and the
// configuration worker, and waits for them.
func (h *Hub) Close() {
	h.stopConfigurations()
	h.jobMu.Lock()
	h.closing = true
	for _, jb := range h.jobs {
		jb.mu.Lock()
		if jb.cancel != nil {
			jb.cancel()
		}
		jb.mu.Unlock()
	}
	h.jobMu.Unlock()
	h.jobWG.Wait()
}

// startJobLocked runs jb in its own goroutine. The caller holds h.jobMu.
func (h *Hub) startJobLocked(jb *job) {
	if h.closing {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	jb.mu.Lock()
	jb.cancel = cancel
	jb.mu.Unlock()
	h.jobWG.Add(1)
	go func() {
		defer h.jobWG.Done()
		defer cancel()
		h.runJob(ctx, jb)
	}()
}

func (h *Hub) runJob(ctx context.Context, jb *job) {
	jb.mu.Lock()
	start := jb.j.StartTime.Time
	jb.mu.Unlock()
	if wait := start.Sub(h.now()); wait > 0 {
		h.setJobStatus(jb, iothub.JobScheduled)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if err := h.resolveDevices(jb); err != nil {
		h.finishJob(jb, iothub.JobFailed, err.Error())
		return
	}
	jb.mu.Lock()
	deadline := jb.j.StartTime.Add(time.Duration(jb.j.MaxExecutionTimeInSeconds) * time.Second)
	var todo []*iothub.DeviceJob
	for _, id := range jb.order {
		if dj := jb.devices[id]; dj.Status == iothub.DeviceJobPending || dj.Status == iothub.DeviceJobScheduled {
			todo = append(todo, dj)
		}
	}
	jb.mu.Unlock()
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	work := make(chan *iothub.DeviceJob)
	var wg sync.WaitGroup
	for i := 0; i < jobWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dj := range work {
				h.runDevice(wctx, jb, dj)
			}
		}()
	}
	for _, dj := range todo {
		select {
		case work <- dj:
		case <-wctx.Done():
		}
		if wctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return // cancelled or the hub is closing
	}
	h.finishAfterRun(jb, wctx.Err() != nil)
}

// resolveDevices selects the job's devices by its condition once, at its
// start, and stores them with the job's running status in one commit: a
// job is running only with its whole device set on disk, so a job
// resumed after a crash keeps the devices it had, and one that crashed
// while resolving resolves them again.
func (h *Hub) resolveDevices(jb *job) error {
	jb.mu.Lock()
	resolved := jb.j.Status == iothub.JobRunning
	j := jb.j
	jb.mu.Unlock()
	if resolved {
		return nil
	}
	cond, err := query.ParseCondition(j.QueryCondition)
	if err != nil {
		return err
	}
	now := iothub.NewTime(h.now())
	var djs []*iothub.DeviceJob
	for _, d := range twinDocs(h.deviceEntries()) {
		if !query.Matches(cond, d) {
			continue
		}
		djs = append(djs, &iothub.DeviceJob{DeviceID: d.(*twinDoc).rec.Device.DeviceID, JobID: j.JobID, JobType: j.Type,
			Status: iothub.DeviceJobPending, CreatedDateTimeUTC: now, LastUpdatedDateTimeUTC: now})
	}
	jb.mu.Lock()
	defer jb.mu.Unlock()
	if jb.j.Status.Terminal() {
		return nil // cancelled meanwhile
	}
	next := jb.j
	next.Status = iothub.JobRunning
	if err := h.svcStore.PutJobDevices(&next, djs); err != nil {
		return fmt.Errorf("store the job's devices: %w", err)
	}
	jb.j = next
	jb.devices, jb.order = map[string]*iothub.DeviceJob{}, nil
	for _, dj := range djs {
		jb.devices[dj.DeviceID] = dj
		jb.order = append(jb.order, dj.DeviceID)
	}
	return nil
}

// runDevice applies the job to one device: it is marked running durably
// first, and one still running at a restart runs again.
func (h *Hub) runDevice(ctx context.Context, jb *job, dj *iothub.DeviceJob) {
	jb.mu.Lock()
	if jb.j.Status.Terminal() {
		jb.mu.Unlock()
		return
	}
	now := iothub.NewTime(h.now())
	dj.Status, dj.StartTimeUTC, dj.LastUpdatedDateTimeUTC = iothub.DeviceJobRunning, now, now
	h.putDeviceJobLocked(dj)
	j := jb.j
	jb.mu.Unlock()

	// The tier's throttle of job device operations paces the job.
	err := h.Admit(ctx, iothub.OpJobDevice, dj.DeviceID, 0)
	var outcome *iothub.DeviceJobOutcome
	switch {
	case err != nil:
	case j.Type == iothub.JobScheduleDeviceMethod:
		var res iothub.MethodResult
		res, err = h.invokeForJob(ctx, dj.DeviceID, *j.CloudToDeviceMethod)
		if err == nil {
			outcome = &iothub.DeviceJobOutcome{DeviceMethodResponse: &res}
		}
	case j.Type == iothub.JobScheduleUpdateTwin:
		patch := PatchOf(*j.UpdateTwin)
		_, err = h.UpdateTwin(ctx, dj.DeviceID, patch, "*", false)
	}
	h.jobMu.Lock()
	closing := h.closing // set before Close cancels the job's context
	h.jobMu.Unlock()
	jb.mu.Lock()
	defer jb.mu.Unlock()
	if err != nil && closing {
		// Cut off by the hub's stop, not failed: it runs again at the
		// next start.
		dj.Status = iothub.DeviceJobPending
		h.putDeviceJobLocked(dj)
		return
	}
	if err != nil {
		e := toHubError(err)
		h.failDeviceLocked(jb, dj, e.Code.String(), e.Message)
		return
	}
	end := iothub.NewTime(h.now())
	dj.Status, dj.EndTimeUTC, dj.LastUpdatedDateTimeUTC, dj.Outcome = iothub.DeviceJobCompleted, end, end, outcome
	h.putDeviceJobLocked(dj)
}

// invokeForJob calls a method for a job: a device that is offline is
// waited for until the job's window closes (service-api §7.4).
func (h *Hub) invokeForJob(ctx context.Context, deviceID string, req iothub.MethodRequest) (iothub.MethodResult, error) {
	for {
		res, err := h.InvokeMethod(ctx, deviceID, req)
		if iothub.CodeOf(err) != iothub.DeviceNotOnline || ctx.Err() != nil {
			return res, err
		}
		e, eerr := h.entry(deviceID)
		if eerr != nil {
			return res, eerr
		}
		if _, werr := h.waitForMethods(ctx, e, time.Until(deadlineOf(ctx))); werr != nil {
			return res, err
		}
	}
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Hour)
}

func toHubError(err error) *iothub.Error {
	if e, ok := err.(*iothub.Error); ok {
		return e
	}
	if iothub.CodeOf(err) != iothub.ServerError {
		return iothub.Errorf(iothub.CodeOf(err), "%v", err)
	}
	return iothub.Errorf(iothub.GatewayTimeout, "the job's window closed before the device answered: %v", err)
}

// failDeviceLocked marks a device job failed. The caller holds jb.mu.
func (h *Hub) failDeviceLocked(jb *job, dj *iothub.DeviceJob, code, msg string) {
	now := iothub.NewTime(h.now())
	dj.Status, dj.EndTimeUTC, dj.LastUpdatedDateTimeUTC = iothub.DeviceJobFailed, now, now
	dj.Error = &iothub.DeviceJobError{Code: code, Description: msg}
	h.putDeviceJobLocked(dj)
}

func (h *Hub) putDeviceJobLocked(dj *iothub.DeviceJob) {
	if err := h.svcStore.PutDeviceJob(dj); err != nil {
		h.log.Error("store device job failed", "job", dj.JobID, "device", dj.DeviceID, "error", err)
	}
}

// finishAfterRun ends a job whose devices were all worked on: completed,
// or failed when its window closed first (its unfinished devices fail).
func (h *Hub) finishAfterRun(jb *job, windowClosed bool) {
	jb.mu.Lock()
	unfinished := 0
	for _, id := range jb.order {
		dj := jb.devices[id]
		if dj.Status == iothub.DeviceJobPending || dj.Status == iothub.DeviceJobRunning || dj.Status == iothub.DeviceJobScheduled {
			h.failDeviceLocked(jb, dj, "JobExpired", "the job's maxExecutionTimeInSeconds passed before this device ran")
			unfinished++
		}
	}
	jb.mu.Unlock()
	if windowClosed && unfinished > 0 {
		h.finishJob(jb, iothub.JobFailed, fmt.Sprintf("maxExecutionTimeInSeconds passed with %d devices unfinished", unfinished))
		return
	}
	h.finishJob(jb, iothub.JobCompleted, "")
}

func (h *Hub) setJobStatus(jb *job, s iothub.JobStatus) {
	jb.mu.Lock()
	defer jb.mu.Unlock()
	if jb.j.Status.Terminal() {
		return
	}
	jb.j.Status = s
	h.putJobLocked(jb)
}

// finishJob sets a terminal status; pending devices of a cancelled job
// become canceled.
func (h *Hub) finishJob(jb *job, s iothub.JobStatus, reason string) {
	jb.mu.Lock()
	defer jb.mu.Unlock()
	if jb.j.Status.Terminal() {
		return
	}
	now := iothub.NewTime(h.now())
	jb.j.Status, jb.j.EndTime, jb.j.FailureReason = s, &now, reason
	if s == iothub.JobCancelled {
		for _, id := range jb.order {
			if dj := jb.devices[id]; dj.Status == iothub.DeviceJobPending || dj.Status == iothub.DeviceJobScheduled {
				dj.Status, dj.LastUpdatedDateTimeUTC = iothub.DeviceJobCanceled, now
				h.putDeviceJobLocked(dj)
			}
		}
	}
	h.putJobLocked(jb)
	h.log.Info("job finished", "job", jb.j.JobID, "status", s, "reason", reason)
}

func (h *Hub) putJobLocked(jb *job) {
	j := jb.j
	j.DeviceJobStatistics = nil
	if err := h.svcStore.PutJob(&j); err != nil {
		h.log.Error("store job failed", "job", j.JobID, "error", err)
	}
}

// deviceJobDocs are the per-device job records, for FROM devices.jobs.
func (h *Hub) deviceJobDocs() []query.Doc {
	var docs []query.Doc
	for _, jb := range h.jobList() {
		jb.mu.Lock()
		for _, id := range jb.order {
			docs = append(docs, newJobDoc(*jb.devices[id]))
		}
		jb.mu.Unlock()
	}
	return docs
}

// jobDoc is a device job record as the query language sees it.
type jobDoc struct {
	dj iothub.DeviceJob
	m  map[string]any
}

func newJobDoc(dj iothub.DeviceJob) *jobDoc {
	b, _ := json.Marshal(dj)
	m, _ := iothub.DecodeObject(b)
	return &jobDoc{dj: dj, m: m}
}

func (d *jobDoc) Lookup(path []string) (any, bool) { return descend(d.m, path) }
func (d *jobDoc) render() any                      { return d.dj }
