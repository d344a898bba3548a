package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
)

// behaviour is how a simulated device acts.
type behaviour struct {
	RebootDelay       time.Duration // offline time of a simulated reboot
	TelemetryInterval time.Duration // between telemetry messages; 0 sends none
	FirmwareVersion   string        // version reported at start
	StepDelay         time.Duration // between firmware-update stages
}

// action is work a method asks of the device's main loop.
type action struct {
	kind    string // "reboot", "firmware", "reset"
	version string // firmware target
}

// stats counts what a fleet of devices did, and follows how many are
// online to report how long the fleet took to recover from an outage.
type stats struct {
	connected, methods, reboots, telemetry, errors atomic.Int64
	refused                                        atomic.Int64 // devices that gave up: credentials refused

	mu        sync.Mutex
	log       *slog.Logger    // guarded by mu; nil: no outage reports
	total     int             // guarded by mu: the fleet's size, once all were online
	online    map[string]bool // guarded by mu
	downSince time.Time       // guarded by mu: when the current outage began
	fewest    int             // guarded by mu: fewest online during it
}

// watch starts outage reports for a fleet of total devices, all online.
func (st *stats) watch(log *slog.Logger, total int) {
	st.mu.Lock()
	st.log, st.total = log, total
	st.mu.Unlock()
}

// linkChanged records a device's connection going up or down. Once the
// fleet was whole, the first device to drop starts an outage, and the
// last one back ends it with a report of how long recovery took.
func (st *stats) linkChanged(id string, up bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.online == nil {
		st.online = map[string]bool{}
	}
	if up {
		st.online[id] = true
	} else {
		delete(st.online, id)
	}
	n := len(st.online)
	switch {
	case st.log == nil:
	case !up && st.downSince.IsZero() && n < st.total:
		st.downSince, st.fewest = time.Now(), n
		st.log.Warn("devices went offline", "online", n, "of", st.total)
	case !up && n < st.fewest:
		st.fewest = n
	case up && !st.downSince.IsZero() && n == st.total:
		st.log.Info("all devices back online", "recovery", time.Since(st.downSince).Round(time.Millisecond).String(), "fewestOnline", st.fewest, "of", st.total)
		st.downSince = time.Time{}
	}
}

// sim is one simulated device: the device-management patterns of the
// "Get started with device management" tutorial and beyond.
type sim struct {
	cs    connstr.Device
	opts  iotdevice.Options
	b     behaviour
	log   *slog.Logger
	stats *stats

	cli      *iotdevice.Client
	fw       string
	interval atomic.Int64 // telemetry interval, nanoseconds
	actions  chan action
	started  time.Time
}

func newSim(cs connstr.Device, opts iotdevice.Options, b behaviour, log *slog.Logger, st *stats) *sim {
	opts.OnConnectionChange = func(up bool) { st.linkChanged(cs.DeviceID, up) }
	s := &sim{cs: cs, opts: opts, b: b, log: log.With("device", cs.DeviceID), stats: st,
		fw: b.FirmwareVersion, actions: make(chan action, 4), started: time.Now().UTC()}
	s.interval.Store(int64(b.TelemetryInterval))
	return s
}

// run connects and serves until ctx ends.
func (s *sim) run(ctx context.Context) error {
	if err := s.connect(ctx); err != nil {
		return err
	}
	s.serve(ctx)
	return nil
}

// serve runs a connected device until ctx ends, then disconnects it.
func (s *sim) serve(ctx context.Context) {
	defer func() { s.disconnect() }()
	if err := s.reportStart(ctx); err != nil {
		s.log.Warn("start-up report failed", "error", err)
	}
	for {
		tick := time.NewTimer(s.telemetryWait())
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case a := <-s.actions:
			tick.Stop()
			if err := s.do(ctx, a); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.stats.errors.Add(1)
				s.log.Warn("action failed", "action", a.kind, "error", err)
			}
		case <-tick.C:
			s.sendTelemetry(ctx)
		}
	}
}

func (s *sim) telemetryWait() time.Duration {
	if d := time.Duration(s.interval.Load()); d > 0 {
		return d
	}
	return 24 * time.Hour
}

// connect dials with exponential backoff and jitter until it succeeds or
// ctx ends. A refusal of the device's credentials (a wrong key, a disabled
// or deleted device) is not retried: it is returned.
func (s *sim) connect(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		cli, err := iotdevice.New(s.cs, s.opts)
		if err != nil {
			return err
		}
		cli.OnMethod("rebootDevice", s.onReboot)
		cli.OnMethod("firmwareUpdate", s.onFirmwareUpdate)
		cli.OnMethod("factoryReset", s.onFactoryReset)
		cli.OnMethod("uploadLogs", func(ctx context.Context, _ json.RawMessage) (int, any) { return s.uploadLogs(ctx, cli) })
		cli.OnDesired(func(p map[string]any, v int64) { s.applyDesired(context.Background(), cli, p, v) })
		cli.OnC2D(func(body []byte, props topic.Properties) {
			id, _ := props.Get(topic.MessageID)
			s.log.Info("cloud-to-device message", "messageId", id, "body", string(body))
		})
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = cli.Connect(cctx)
		cancel()
		if err == nil {
			s.cli = cli
			s.stats.connected.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, iotdevice.ErrUnauthorized) {
			return fmt.Errorf("the hub refused the device's credentials (a wrong key, or a disabled or deleted device); not retrying: %w", err)
		}
		// ±50 %, so a fleet that lost the hub together does not come
		// back in step.
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		s.log.Info("connect failed; retrying", "error", err, "in", wait.Round(time.Millisecond).String())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (s *sim) disconnect() {
	if s.cli != nil {
		s.cli.Close()
		s.cli = nil
		s.stats.connected.Add(-1)
	}
}

// reportStart reports the firmware, start time and telemetry interval and
// applies the desired properties the device missed while offline.
func (s *sim) reportStart(ctx context.Context) error {
	twin, err := s.cli.Twin(ctx)
	if errors.Is(err, iotdevice.ErrNotSupported) {
		s.log.Info("no twin and no methods on this transport; sending telemetry and receiving cloud-to-device messages only")
		return nil
	}
	if err != nil {
		return err
	}
	s.applyDesired(ctx, s.cli, twin.Desired.Props, twin.Desired.Version)
	_, err = s.cli.UpdateReported(ctx, map[string]any{
		"firmware":  map[string]any{"version": s.fw, "status": "current"},
		"startTime": s.started.Format(time.RFC3339Nano),
	})
	return err
}

// applyDesired applies telemetryInterval (seconds) and acknowledges it as
// an IoT Plug and Play writable property: value, ac (status code), av
// (desired version), ad (description).
func (s *sim) applyDesired(ctx context.Context, cli *iotdevice.Client, p map[string]any, version int64) {
	raw, ok := p["telemetryInterval"]
	if !ok {
		return
	}
	secs, err := strconv.ParseFloat(fmt.Sprint(raw), 64)
	ack := map[string]any{"value": raw, "av": version}
	if err != nil || secs <= 0 {
		ack["ac"], ack["ad"] = 400, "telemetryInterval must be a positive number of seconds"
	} else {
		s.interval.Store(int64(secs * float64(time.Second)))
		ack["ac"], ack["ad"] = 200, "applied"
	}
	if _, err := cli.UpdateReported(ctx, map[string]any{"telemetryInterval": ack}); err != nil {
		s.log.Warn("acknowledging telemetryInterval failed", "error", err)
	}
}

func (s *sim) sendTelemetry(ctx context.Context) {
	body, _ := json.Marshal(map[string]any{
		"temperature": 20 + rand.Float64()*10,
		"humidity":    40 + rand.Float64()*20,
		"firmware":    s.fw,
	})
	props := topic.Properties{}.Set(topic.ContentType, "application/json").Set(topic.ContentEncoding, "utf-8")
	if err := s.cli.SendEvent(ctx, body, props); err != nil {
		s.stats.errors.Add(1)
		s.log.Warn("telemetry not sent", "error", err)
		return
	}
	s.stats.telemetry.Add(1)
}

// queue hands an action to the main loop; a device already busy refuses.
func (s *sim) queue(a action) bool {
	select {
	case s.actions <- a:
		return true
	default:
		return false
	}
}

// onReboot answers at once, then the main loop simulates the reboot.
func (s *sim) onReboot(ctx context.Context, _ json.RawMessage) (int, any) {
	s.stats.methods.Add(1)
	if !s.queue(action{kind: "reboot"}) {
		return 409, map[string]string{"result": "Device busy"}
	}
	s.log.Info("reboot requested")
	return 200, map[string]string{"result": "Reboot started", "requestedAt": time.Now().UTC().Format(time.RFC3339Nano)}
}

// onFirmwareUpdate takes {"version":"x"} and reports progress through
// properties.reported.firmware.
func (s *sim) onFirmwareUpdate(ctx context.Context, p json.RawMessage) (int, any) {
	s.stats.methods.Add(1)
	var req struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(p, &req); err != nil || req.Version == "" {
		return 400, map[string]string{"result": `payload must be {"version":"<new version>"}`}
	}
	if !s.queue(action{kind: "firmware", version: req.Version}) {
		return 409, map[string]string{"result": "Device busy"}
	}
	s.log.Info("firmware update requested", "version", req.Version)
	return 200, map[string]string{"result": "Firmware update started", "version": req.Version}
}

func (s *sim) onFactoryReset(ctx context.Context, _ json.RawMessage) (int, any) {
	s.stats.methods.Add(1)
	if !s.queue(action{kind: "reset"}) {
		return 409, map[string]string{"result": "Device busy"}
	}
	return 200, map[string]string{"result": "Factory reset started"}
}

// uploadLogs uploads a log of the device's state through the hub's file
// upload on the connection cli, and answers with the blob's name, or 500
// with why not (a hub without storage, a storage account that refuses
// the write).
func (s *sim) uploadLogs(ctx context.Context, cli *iotdevice.Client) (int, any) {
	s.stats.methods.Add(1)
	now := time.Now().UTC()
	log := fmt.Sprintf("%s %s firmware=%s telemetryInterval=%s methods=%d\n", now.Format(time.RFC3339Nano), s.cs.DeviceID,
		s.b.FirmwareVersion, s.telemetryWait(), s.stats.methods.Load())
	name := "logs/" + now.Format("20060102T150405.000Z") + ".log"
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	blob, err := cli.UploadFile(ctx, name, strings.NewReader(log), int64(len(log)))
	if err != nil {
		s.log.Warn("log upload failed", "error", err)
		return 500, map[string]string{"result": "Upload failed", "error": err.Error()}
	}
	s.log.Info("logs uploaded", "blob", blob)
	return 200, map[string]string{"result": "Logs uploaded", "blobName": blob}
}

func (s *sim) do(ctx context.Context, a action) error {
	switch a.kind {
	case "reboot":
		return s.reboot(ctx, nil)
	case "firmware":
		return s.firmwareUpdate(ctx, a.version)
	case "reset":
		return s.factoryReset(ctx)
	}
	return fmt.Errorf("unknown action %q", a.kind)
}

// reboot disconnects, stays offline for RebootDelay, reconnects and reports
// rebootTime and lastReboot, plus extra.
func (s *sim) reboot(ctx context.Context, extra map[string]any) error {
	s.log.Info("rebooting", "offline", s.b.RebootDelay.String())
	s.disconnect()
	select {
	case <-time.After(s.b.RebootDelay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.connect(ctx); err != nil {
		return err
	}
	s.stats.reboots.Add(1)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	patch := map[string]any{"rebootTime": now, "lastReboot": now}
	for k, v := range extra {
		patch[k] = v
	}
	if _, err := s.cli.UpdateReported(ctx, patch); err != nil {
		return err
	}
	s.log.Info("rebooted", "rebootTime", now)
	return nil
}

// firmwareUpdate reports downloading → applying → rebooting → current.
func (s *sim) firmwareUpdate(ctx context.Context, version string) error {
	for _, stage := range []string{"downloading", "applying", "rebooting"} {
		fw := map[string]any{"status": stage, "version": s.fw, "targetVersion": version,
			"updatedAt": time.Now().UTC().Format(time.RFC3339Nano)}
		if _, err := s.cli.UpdateReported(ctx, map[string]any{"firmware": fw}); err != nil {
			return err
		}
		s.log.Info("firmware update", "stage", stage, "target", version)
		if stage == "rebooting" {
			break
		}
		select {
		case <-time.After(s.b.StepDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.fw = version
	return s.reboot(ctx, map[string]any{"firmware": map[string]any{"status": "current", "version": version,
		"targetVersion": nil, "updatedAt": time.Now().UTC().Format(time.RFC3339Nano)}})
}

// factoryReset deletes every reported property, restores the defaults and
// reports the start-up state again.
func (s *sim) factoryReset(ctx context.Context) error {
	twin, err := s.cli.Twin(ctx)
	if err != nil {
		return err
	}
	clear := map[string]any{}
	for k := range twin.Reported.Props {
		clear[k] = nil
	}
	if _, err := s.cli.UpdateReported(ctx, clear); err != nil {
		return err
	}
	s.fw = s.b.FirmwareVersion
	s.interval.Store(int64(s.b.TelemetryInterval))
	s.log.Info("factory reset")
	return s.reportStart(ctx)
}
