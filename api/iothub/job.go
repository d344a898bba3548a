package iothub

// JobType is the type of a scheduled job (service-api §7.1).
type JobType string

// Job types.
const (
	JobScheduleDeviceMethod JobType = "scheduleDeviceMethod"
	JobScheduleUpdateTwin   JobType = "scheduleUpdateTwin"
)

// JobStatus is a job's status. Note "cancelled" with two Ls, unlike a
// device job's "canceled" (service-api §7.3, §13 item 11).
type JobStatus string

// Job statuses.
const (
	JobUnknown   JobStatus = "unknown"
	JobEnqueued  JobStatus = "enqueued"
	JobQueued    JobStatus = "queued"
	JobScheduled JobStatus = "scheduled"
	JobRunning   JobStatus = "running"
	JobCompleted JobStatus = "completed"
	JobFailed    JobStatus = "failed"
	JobCancelled JobStatus = "cancelled"
)

// Terminal reports whether s is a final status.
func (s JobStatus) Terminal() bool {
	return s == JobCompleted || s == JobFailed || s == JobCancelled
}

// DeviceJobStatus is the status of one device's part in a job
// (service-api §7.4). Note "canceled" with one L.
type DeviceJobStatus string

// Device job statuses.
const (
	DeviceJobPending   DeviceJobStatus = "pending"
	DeviceJobScheduled DeviceJobStatus = "scheduled"
	DeviceJobRunning   DeviceJobStatus = "running"
	DeviceJobCompleted DeviceJobStatus = "completed"
	DeviceJobFailed    DeviceJobStatus = "failed"
	DeviceJobCanceled  DeviceJobStatus = "canceled"
)

// Job is the JobResponse of the jobs v2 API (service-api §7.3), also the
// body of PUT /jobs/v2/{id}.
type Job struct {
	JobID                     string         `json:"jobId"`
	Type                      JobType        `json:"type"`
	Status                    JobStatus      `json:"status,omitempty"`
	QueryCondition            string         `json:"queryCondition,omitempty"`
	CreatedTime               *Time          `json:"createdTime,omitempty"`
	StartTime                 *Time          `json:"startTime,omitempty"`
	EndTime                   *Time          `json:"endTime,omitempty"`
	MaxExecutionTimeInSeconds int64          `json:"maxExecutionTimeInSeconds,omitempty"`
	CloudToDeviceMethod       *MethodRequest `json:"cloudToDeviceMethod,omitempty"`
	UpdateTwin                *TwinPatch     `json:"updateTwin,omitempty"`
	FailureReason             string         `json:"failureReason,omitempty"`
	StatusMessage             string         `json:"statusMessage,omitempty"`
	DeviceJobStatistics       *JobStatistics `json:"deviceJobStatistics,omitempty"`
}

// JobStatistics counts a job's devices by state.
type JobStatistics struct {
	DeviceCount    int `json:"deviceCount"`
	FailedCount    int `json:"failedCount"`
	SucceededCount int `json:"succeededCount"`
	RunningCount   int `json:"runningCount"`
	PendingCount   int `json:"pendingCount"`
}

// DeviceJob is one device's record in a job, the rows of
// SELECT * FROM devices.jobs (service-api §7.4).
type DeviceJob struct {
	DeviceID               string            `json:"deviceId"`
	ModuleID               string            `json:"moduleId,omitempty"`
	JobID                  string            `json:"jobId"`
	JobType                JobType           `json:"jobType"`
	Status                 DeviceJobStatus   `json:"status"`
	StartTimeUTC           Time              `json:"startTimeUtc"`
	EndTimeUTC             Time              `json:"endTimeUtc"`
	CreatedDateTimeUTC     Time              `json:"createdDateTimeUtc"`
	LastUpdatedDateTimeUTC Time              `json:"lastUpdatedDateTimeUtc"`
	Outcome                *DeviceJobOutcome `json:"outcome,omitempty"`
	Error                  *DeviceJobError   `json:"error,omitempty"`
}

// DeviceJobOutcome is the result of a method job on one device.
type DeviceJobOutcome struct {
	DeviceMethodResponse *MethodResult `json:"deviceMethodResponse,omitempty"`
}

// DeviceJobError says why a device job failed.
type DeviceJobError struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}
