package hub

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Store persists device records. Put must return only once the record is
// durable. Implementations may batch concurrent calls into one commit.
type Store interface {
	// Load calls fn for every stored record.
	Load(fn func(Record) error) error
	// Put stores rec, replacing the record of the same identity
	// (Key(rec.Device.DeviceID, rec.ModuleID)).
	Put(rec *Record) error
	// Delete removes the records of the identity keys in one commit, all
	// or none; deleting a missing one is not an error.
	Delete(keys ...string) error
}

// ServiceStore persists what the service API creates besides identities:
// jobs with their per-device records, and configurations. Like Store.Put,
// each Put and Delete returns once the write is durable.
type ServiceStore interface {
	PutJob(j *iothub.Job) error
	PutDeviceJob(dj *iothub.DeviceJob) error
	// PutJobDevices stores a job and its device records in one commit,
	// all or none.
	PutJobDevices(j *iothub.Job, djs []*iothub.DeviceJob) error
	LoadJobs(fn func(iothub.Job, []iothub.DeviceJob) error) error
	PutConfiguration(c *iothub.Configuration) error
	DeleteConfiguration(id string) error
	LoadConfigurations(fn func(iothub.Configuration) error) error
	// The service-bound queues: items by queue name and sequence number.
	PutQueued(queue string, seq uint64, v []byte) error
	DeleteQueued(queue string, seqs ...uint64) error
	LoadQueued(queue string, fn func(seq uint64, v []byte) error) error
}

// Record is everything the hub persists about one device: its identity, its
// twin and its MQTT session (which topic families it subscribed to with a
// persistent session).
type Record struct {
	// Device is the identity; for a module it is the module's identity
	// (keys, times) with the parent's DeviceID.
	Device      iothub.Device `json:"device"`
	ModuleID    string        `json:"moduleId,omitempty"`
	ManagedBy   string        `json:"managedBy,omitempty"`
	Twin        iothub.Twin   `json:"twin"`
	TwinETag    int64         `json:"twinEtagCounter"`
	DeviceETag  int64         `json:"deviceEtagCounter"`
	Session     Subscriptions `json:"session"`
	C2D         []C2DMessage  `json:"c2d,omitempty"`         // pending cloud-to-device messages, oldest first
	C2DSequence int64         `json:"c2dSequence,omitempty"` // the sequence number of the last message queued
}

// Options configures a Hub. The zero value of each field is a usable default.
type Options struct {
	// HostNames are the hub's host names, compared case-insensitively and
	// ignoring any port. Zero means "localhost".
	HostNames []string
	// Policies are the shared access policies. Zero means DefaultPolicies
	// with DevKey.
	Policies []Policy
	// Files is the storage account of file uploads. Nil answers uploads
	// with an error, as a hub without file upload settings does.
	Files FileStore
	// FileUploadSASTTL is how long an upload's SAS is valid. Zero means
	// an hour, Azure's default.
	FileUploadSASTTL time.Duration
	// NoFileNotifications turns off the notifications of uploads.
	NoFileNotifications bool
	// TokenSkew is the clock skew allowed past a token's expiry. Zero means
	// 5 minutes; a negative value allows none.
	TokenSkew time.Duration
	// MethodTimeoutMargin answers a method that times out this much before
	// its response timeout, so a client whose socket times out at exactly
	// that moment sees the hub's 504. Zero means 250 ms; negative means none.
	MethodTimeoutMargin time.Duration
	// MaxConcurrentJobs is how many jobs may be queued, scheduled or
	// running at once (Azure: 1 on S1, 5 on S2, 10 on S3). Zero means 10.
	MaxConcurrentJobs int
	// ConfigurationInterval is how often configurations are evaluated
	// against the twins, besides right after one changes (Azure: about
	// every 5 minutes). Zero means 10 seconds; negative, only after a
	// change.
	ConfigurationInterval time.Duration
	// X509Roots are the verified CA certificates that sign the
	// certificates of certificateAuthority identities. Nil means none: such
	// identities cannot connect.
	X509Roots *x509.CertPool
	// Events is the telemetry log the built-in Event Hubs-compatible
	// endpoint reads. Nil keeps no log: telemetry only counts as
	// activity.
	Events EventLog
	// Partitions is the number of partitions of the telemetry log. Zero
	// means 4, Azure's default.
	Partitions int
	// Retention is how long events are kept. Zero means a day, Azure's
	// default.
	Retention time.Duration
	// RetainEvents bounds the events kept per partition, so a flood
	// cannot fill the disk. Zero means 100,000.
	RetainEvents int64
	// RetainBytes bounds the bytes of the events kept, all partitions
	// together (the oldest go first). Zero means 1 GiB.
	RetainBytes int64
	// Now is the clock. Zero means time.Now.
	Now func() time.Time
	// Logger receives structured logs. Zero means slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if len(o.HostNames) == 0 {
		o.HostNames = []string{"localhost"}
	}
	if len(o.Policies) == 0 {
		o.Policies = DefaultPolicies(DevKey, DevKey2)
	}
	if o.TokenSkew == 0 {
		o.TokenSkew = 5 * time.Minute
	} else if o.TokenSkew < 0 {
		o.TokenSkew = 0
	}
	if o.MethodTimeoutMargin == 0 {
		o.MethodTimeoutMargin = 250 * time.Millisecond
	} else if o.MethodTimeoutMargin < 0 {
		o.MethodTimeoutMargin = 0
	}
	if o.MaxConcurrentJobs == 0 {
		o.MaxConcurrentJobs = 10
	}
	if o.ConfigurationInterval == 0 {
		o.ConfigurationInterval = 10 * time.Second
	}
	if o.FileUploadSASTTL <= 0 {
		o.FileUploadSASTTL = time.Hour
	}
	if o.Partitions <= 0 {
		o.Partitions = 4
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.RetainBytes <= 0 {
		o.RetainBytes = 1 << 30
	}
	if o.RetainEvents <= 0 {
		o.RetainEvents = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Hub is an IoT hub.
type Hub struct {
	opts  Options
	store Store
	log   *slog.Logger

	mu       sync.RWMutex
	devices  map[string]*entry // guarded by mu
	sorted   []*entry          // guarded by mu; devices by id, nil when stale
	creating map[string]bool   // guarded by mu; ids whose create is being stored

	serviceTokens sync.Map // Authorization header → verifiedToken
	tokenCount    atomic.Int64

	svcStore ServiceStore
	jobMu    sync.Mutex
	jobs     map[string]*job // guarded by jobMu
	closing  bool            // guarded by jobMu
	jobWG    sync.WaitGroup

	cfgs      cfgState
	feedback  *queue[iothub.FeedbackRecord]
	fileNotes *queue[iothub.FileNotification]
	files     fileState
	ev        events
	res       resilience
	activity  activityFeed
}

// New returns a hub that persists devices to store, and jobs and
// configurations to svc, and loads what they hold. Start resumes the
// stored jobs and starts applying configurations.
func New(store Store, svc ServiceStore, opts Options) (*Hub, error) {
	opts.setDefaults()
	h := &Hub{opts: opts, store: store, svcStore: svc, log: opts.Logger, devices: map[string]*entry{}, creating: map[string]bool{}, jobs: map[string]*job{}}
	err := store.Load(func(rec Record) error {
		rec.Device.ConnectionState = iothub.Disconnected
		r := rec
		e := newEntry(&r)
		h.devices[e.id] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	if err := h.loadConfigurations(); err != nil {
		return nil, err
	}
	h.feedback = &queue[iothub.FeedbackRecord]{name: "feedback", store: svc, max: maxFeedback}
	h.fileNotes = &queue[iothub.FileNotification]{name: "fileNotifications", store: svc, max: maxFileNotifications}
	for _, load := range []func() error{h.feedback.load, h.fileNotes.load} {
		if err := load(); err != nil {
			return nil, fmt.Errorf("load the service-bound queues: %w", err)
		}
	}
	if err := h.openEvents(); err != nil {
		return nil, fmt.Errorf("open telemetry log: %w", err)
	}
	return h, nil
}

func (h *Hub) now() time.Time { return h.opts.Now().UTC() }

// Key is how the hub names an identity: the device id, or
// "{deviceId}/{moduleId}" for a module — the MQTT client id of the
// identity. Device ids cannot contain '/', so keys are unambiguous.
func Key(deviceID, moduleID string) string {
	if moduleID == "" {
		return deviceID
	}
	return deviceID + "/" + moduleID
}

// entry finds an identity by key: DeviceNotFound when its device is
// missing, ModuleNotFound when only the module is.
func (h *Hub) entry(key string) (*entry, error) {
	h.mu.RLock()
	e := h.devices[key]
	h.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	if d, m, ok := strings.Cut(key, "/"); ok {
		if _, err := h.entry(d); err != nil {
			return nil, err
		}
		return nil, iothub.Errorf(iothub.ModuleNotFound, "Module '%s' not found on device '%s'", m, d)
	}
	return nil, iothub.Errorf(iothub.DeviceNotFound, "%s", key)
}

// notFound is the error of an identity deleted while it was being used.
func notFound(key string) error {
	if d, m, ok := strings.Cut(key, "/"); ok {
		return iothub.Errorf(iothub.ModuleNotFound, "Module '%s' not found on device '%s'", m, d)
	}
	return iothub.Errorf(iothub.DeviceNotFound, "%s", key)
}

// deviceEntries returns the devices' entries, without modules, by id.
func (h *Hub) deviceEntries() []*entry { return h.filterEntries(false) }

// moduleEntries returns the modules' entries by device and module id.
func (h *Hub) moduleEntries() []*entry { return h.filterEntries(true) }

func (h *Hub) filterEntries(modules bool) []*entry {
	all := h.entries()
	out := make([]*entry, 0, len(all))
	for _, e := range all {
		if (e.rec.Load().ModuleID != "") == modules {
			out = append(out, e)
		}
	}
	return out
}

// entries returns every identity's entry sorted by key. The slice is
// shared: callers must not change it.
func (h *Hub) entries() []*entry {
	h.mu.RLock()
	out := h.sorted
	h.mu.RUnlock()
	if out != nil {
		return out
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sorted == nil {
		h.sorted = make([]*entry, 0, len(h.devices))
		for _, e := range h.devices {
			h.sorted = append(h.sorted, e)
		}
		sort.Slice(h.sorted, func(i, j int) bool { return h.sorted[i].id < h.sorted[j].id })
	}
	return h.sorted
}

// commit persists next as e's record and swaps it in. The caller holds e.mu.
func (h *Hub) commitLocked(e *entry, next *Record) error {
	if e.gone.Load() {
		// Deleted while this writer waited for e.mu: writing would bring
		// the record back.
		return notFound(e.id)
	}
	e.live.stamp(next)
	if err := h.store.Put(next); err != nil {
		h.log.Error("store write failed", "device", e.id, "error", err)
		return iothub.Errorf(iothub.ServerError, "the change could not be stored")
	}
	e.rec.Store(next)
	return nil
}

// TrackingID returns a new 32-hex-digit tracking id for an error response.
func TrackingID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
