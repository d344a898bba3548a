package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// cmdJob schedules a job on the devices a query condition selects and
// follows it to completion with a progress line:
//
//	invoker job reboot -condition "tags.reboot = true"
//	invoker job method -condition "..." -method M [-payload JSON]
//	invoker job twin   -condition "..." [-desired JSON] [-tags JSON]
//	invoker job show|cancel -id ID;  invoker job list
func cmdJob(ctx context.Context, e *env, sub string, args []string) error {
	id := e.flags.String("id", "", "job id (default: generated)")
	cond := e.flags.String("condition", "", "which devices: a WHERE condition such as \"tags.site = 'lab'\", or *")
	method := e.flags.String("method", "rebootDevice", "method: the method to invoke")
	payload := e.flags.String("payload", "", "method: JSON payload")
	desired := e.flags.String("desired", "", "twin: desired properties patch (JSON object)")
	tags := e.flags.String("tags", "", "twin: tags patch (JSON object)")
	start := e.flags.Duration("start-in", 0, "start the job this long from now")
	maxTime := e.flags.Int("max-execution-time", 3600, "seconds the job may run")
	wait := e.flags.Bool("wait", true, "follow the job until it finishes")
	if err := e.parse(args); err != nil {
		return err
	}
	switch sub {
	case "show", "cancel":
		if *id == "" {
			return fmt.Errorf("%w: -id is required", errUsage)
		}
		var j iothub.Job
		var err error
		if sub == "show" {
			j, err = e.svc.Job(ctx, *id)
		} else {
			j, err = e.svc.CancelJob(ctx, *id)
		}
		if err != nil {
			return err
		}
		e.print(j, describeJob(j))
		return nil
	case "list":
		jobs, err := e.svc.Jobs(ctx, "", "")
		if err != nil {
			return err
		}
		text := ""
		for _, j := range jobs {
			text += describeJob(j) + "\n"
		}
		e.print(jobs, text)
		return nil
	case "reboot", "method", "twin":
	default:
		return fmt.Errorf("%w: job reboot|method|twin|show|cancel|list", errUsage)
	}
	if *cond == "" {
		return fmt.Errorf("%w: -condition is required", errUsage)
	}
	if *id == "" {
		*id = sub + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	j := iothub.Job{JobID: *id, QueryCondition: *cond, MaxExecutionTimeInSeconds: int64(*maxTime)}
	if *start > 0 {
		at := iothub.NewTime(time.Now().Add(*start))
		j.StartTime = &at
	}
	switch sub {
	case "reboot", "method":
		p, err := parseJSON("payload", *payload)
		if err != nil {
			return err
		}
		j.Type = iothub.JobScheduleDeviceMethod
		thirty := 30
		j.CloudToDeviceMethod = &iothub.MethodRequest{MethodName: *method, Payload: p, ResponseTimeoutInSeconds: &thirty}
		if sub == "reboot" {
			j.CloudToDeviceMethod.MethodName = "rebootDevice"
		}
	case "twin":
		p, err := parsePatch(*tags, *desired)
		if err != nil {
			return err
		}
		p.ETag = "*" // twin jobs are forced updates (service-api §7.1)
		j.Type, j.UpdateTwin = iothub.JobScheduleUpdateTwin, &p
	}
	j, err := e.svc.ScheduleJob(ctx, j)
	if err != nil {
		return err
	}
	if *e.output == "text" {
		fmt.Fprintf(e.stdout, "scheduled job %s (%s) on devices where %s\n", j.JobID, j.Type, j.QueryCondition)
	}
	if !*wait {
		e.print(j, describeJob(j))
		return nil
	}
	j, err = followJob(ctx, e, j.JobID)
	if err != nil {
		return err
	}
	e.print(j, describeJob(j))
	if j.Status != iothub.JobCompleted {
		return fmt.Errorf("job %s ended %s: %s", j.JobID, j.Status, j.FailureReason)
	}
	if s := j.DeviceJobStatistics; s != nil && s.FailedCount > 0 {
		// A script's exit code says whether every device did it.
		return fmt.Errorf("job %s completed, but on %d of its %d devices it failed (invoker query \"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '%s'\" says why)",
			j.JobID, s.FailedCount, s.DeviceCount, j.JobID)
	}
	return nil
}

// followJob polls the job, printing a progress line, until it finishes.
func followJob(ctx context.Context, e *env, id string) (iothub.Job, error) {
	prog := cmdline.NewProgress(e.stdout)
	defer prog.Done()
	for {
		j, err := e.svc.Job(ctx, id)
		if err != nil {
			return j, err
		}
		if *e.output == "text" {
			prog.Update(progress(j))
		}
		if j.Status.Terminal() {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func progress(j iothub.Job) string {
	s := j.DeviceJobStatistics
	if s == nil {
		return string(j.Status)
	}
	line := fmt.Sprintf("%-9s devices %d: %d succeeded, %d failed, %d running, %d pending",
		j.Status, s.DeviceCount, s.SucceededCount, s.FailedCount, s.RunningCount, s.PendingCount)
	if s.RunningCount > 0 && j.StartTime != nil && j.MaxExecutionTimeInSeconds > 0 {
		// A device that is offline is waited for until the job's window
		// closes (service-api §7.4): say so, or a long wait says nothing.
		end := j.StartTime.Add(time.Duration(j.MaxExecutionTimeInSeconds) * time.Second)
		line += fmt.Sprintf("; the running ones wait for their device to connect or answer, until %s", end.Local().Format("15:04:05"))
	}
	return line
}

func describeJob(j iothub.Job) string {
	b, _ := json.Marshal(j.DeviceJobStatistics)
	return fmt.Sprintf("%s %s %s %s", j.JobID, j.Type, j.Status, b)
}
