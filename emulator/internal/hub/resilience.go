package hub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Resilience testing: the throttles and daily quota of an emulated tier,
// added latency, and faults on demand. The faces call Admit before an
// operation (the hub calls it itself for device telemetry, twin requests,
// cloud-to-device sends and file uploads, which have one way in); it
// answers nil, or the error Azure would answer with, after any delay.
// With no tier, no latency and no fault it costs one atomic load.

// ErrDropped is what Admit answers for a message a drop fault discards:
// the caller acknowledges it and stores nothing.
var ErrDropped = errors.New("hub: dropped by a fault")

// Latency is a delay added to operations.
type Latency struct {
	Name string
	// Fixed is added to every operation; PerOp, with its jitter, to the
	// operations it names.
	Fixed time.Duration
	PerOp map[iothub.Operation][2]time.Duration // base, jitter (±)
}

// ParseLatency reads a latency profile: "none", "azure-like" (delays of
// the order users report from an Azure region nearby: tens of
// milliseconds for twin and registry operations, a few hundred for
// methods and connects, with jitter), or a fixed duration ("50ms").
func ParseLatency(s string) (*Latency, error) {
	switch s {
	case "", "none":
		return nil, nil
	case "azure-like":
		ms := func(base, jitter int) [2]time.Duration {
			return [2]time.Duration{time.Duration(base) * time.Millisecond, time.Duration(jitter) * time.Millisecond}
		}
		return &Latency{Name: s, PerOp: map[iothub.Operation][2]time.Duration{
			iothub.OpMethod: ms(200, 150), iothub.OpConnect: ms(300, 200), iothub.OpTwinRead: ms(60, 40),
			iothub.OpTwinUpdate: ms(80, 50), iothub.OpRegistry: ms(50, 30), iothub.OpQuery: ms(100, 60),
			iothub.OpD2C: ms(30, 20), iothub.OpC2DSend: ms(50, 30), iothub.OpC2DReceive: ms(50, 30),
			iothub.OpFileUpload: ms(100, 50), iothub.OpJobs: ms(80, 40), iothub.OpConfigurations: ms(80, 40),
		}}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return nil, fmt.Errorf("latency %q: want none, azure-like or a duration", s)
	}
	return &Latency{Name: s, Fixed: d}, nil
}

func (l *Latency) delay(op iothub.Operation) time.Duration {
	if l == nil {
		return 0
	}
	d := l.Fixed
	if p, ok := l.PerOp[op]; ok {
		d += p[0]
		if p[1] > 0 {
			d += time.Duration(rand.Int64N(int64(2*p[1]))) - p[1]
		}
	}
	return max(d, 0)
}

// resilience is the hub's tier, buckets, quota and faults.
type resilience struct {
	on atomic.Bool // a tier, a latency or a fault is set: Admit takes mu

	mu        sync.Mutex
	tier      iothub.TierSettings          // guarded by mu
	buckets   map[iothub.Operation]*bucket // guarded by mu
	throttled map[string]int64             // guarded by mu
	shaped    map[string]int64             // guarded by mu
	day       int64                        // guarded by mu: the UTC day of used
	used      int64                        // guarded by mu: daily quota meters used that day
	latency   *Latency                     // guarded by mu
	faults    []*fault                     // guarded by mu: newest last, the last 100
	nextID    int                          // guarded by mu
}

// bucket is a token bucket: rate per second, up to capacity. Below zero
// it is the traffic-shaping queue: operations admitted on credit, each
// waiting for its token.
type bucket struct {
	tokens, capacity, rate float64
	last                   time.Time
}

// take spends cost tokens. It answers how long the operation must wait
// for them and whether it may: an operation that would wait longer than
// queue is refused, and then wait is when a retry would be queued.
func (b *bucket) take(now time.Time, cost float64, queue time.Duration) (time.Duration, bool) {
	b.tokens = math.Min(b.capacity, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= cost {
		b.tokens -= cost
		return 0, true
	}
	wait := time.Duration((cost - b.tokens) / b.rate * float64(time.Second))
	if wait <= queue {
		b.tokens -= cost
		return wait, true
	}
	return wait - queue, false
}

func (r *resilience) refreshOnLocked() {
	r.on.Store(r.tier.Tier != "" || r.latency != nil || slices.ContainsFunc(r.faults, func(f *fault) bool { return f.Active }))
}

// SetTier sets the tier to emulate; a zero Tier turns emulation off. The
// buckets start full.
func (h *Hub) SetTier(s iothub.TierSettings) error {
	if s.Tier != "" {
		if _, err := iothub.ParseTier(string(s.Tier)); err != nil {
			return iothub.Errorf(iothub.ArgumentInvalid, "%v", err)
		}
	}
	if s.Units < 1 || s.Tier == iothub.TierF1 {
		s.Units = 1
	}
	if s.Window <= 0 {
		s.Window = iothub.Duration(time.Minute)
	}
	r := &h.res
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tier = iothub.TierSettings{Tier: s.Tier, Units: s.Units, Window: s.Window, Queue: max(s.Queue, 0)}
	r.buckets = map[iothub.Operation]*bucket{}
	now := h.now()
	for _, op := range iothub.Operations {
		rate := s.Tier.Rate(op, s.Units)
		capacity := math.Max(1, rate*time.Duration(s.Window).Seconds())
		r.buckets[op] = &bucket{tokens: capacity, capacity: capacity, rate: rate, last: now}
	}
	r.throttled, r.shaped = map[string]int64{}, map[string]int64{}
	r.refreshOnLocked()
	if s.Tier != "" {
		h.log.Info("tier emulation", "tier", s.Tier, "units", s.Units, "window", time.Duration(s.Window).String(), "queue", time.Duration(s.Queue).String())
	}
	return nil
}

// SetLatency sets the added latency; nil is none.
func (h *Hub) SetLatency(l *Latency) {
	r := &h.res
	r.mu.Lock()
	r.latency = l
	r.refreshOnLocked()
	r.mu.Unlock()
}

// Tier reports the emulated tier, its refusals and the quota used today.
func (h *Hub) Tier() iothub.TierSettings {
	r := &h.res
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.tier
	if len(r.throttled) > 0 {
		s.Throttled = maps.Clone(r.throttled)
	}
	if len(r.shaped) > 0 {
		s.Shaped = maps.Clone(r.shaped)
	}
	if r.day == h.now().Unix()/86400 {
		s.MessagesToday = r.used
	}
	return s
}

// Admit lets an operation of deviceID ("" for none) with a payload of
// size bytes through the faults, the tier and the daily quota, then
// waits for the latency and delay faults (or ctx). It answers nil, the
// error Azure would give, or ErrDropped.
func (h *Hub) Admit(ctx context.Context, op iothub.Operation, deviceID string, size int) error {
	return h.admit(ctx, op, deviceID, size, true)
}

// AdmitDeviceRequest lets a device's HTTPS request through the connect
// faults and latency. It spends nothing of the connect throttle, which
// counts connections established, and a request on a kept-alive HTTPS
// connection establishes none.
func (h *Hub) AdmitDeviceRequest(ctx context.Context, deviceID string) error {
	return h.admit(ctx, iothub.OpConnect, deviceID, 0, false)
}

func (h *Hub) admit(ctx context.Context, op iothub.Operation, deviceID string, size int, throttle bool) error {
	r := &h.res
	if !r.on.Load() {
		return nil
	}
	delay, err := r.admit(h, op, deviceID, size, throttle)
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
	}
	return err
}

func (r *resilience) admit(h *Hub, op iothub.Operation, deviceID string, size int, throttle bool) (time.Duration, error) {
	now := h.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	delay := r.latency.delay(op)
	r.expireLocked(now)
	for _, f := range r.faults {
		if !f.Active || !f.applies(deviceID) {
			continue
		}
		switch {
		case f.Kind == iothub.FaultRefuseConnects && op == iothub.OpConnect:
			f.hit(now)
			return delay, iothub.Errorf(iothub.ServiceUnavailable, "the hub is refusing connections (fault %s)", f.ID)
		case f.Kind == iothub.FaultFail && f.Operation == op:
			f.hit(now)
			return delay, iothub.Errorf(f.code, "failed by fault %s", f.ID)
		case f.Kind == iothub.FaultDelay && (f.Operation == op || f.Operation == ""):
			f.hit(now)
			delay += time.Duration(f.Delay)
		case f.Kind == iothub.FaultDrop && f.Operation == op:
			f.hit(now)
			return delay, ErrDropped
		}
	}
	t := r.tier.Tier
	if t == "" || !throttle {
		return delay, nil
	}
	if !t.Available(op) {
		r.throttled[string(op)]++
		return delay, iothub.Errorf(iothub.MethodNotAllowed, "%s is not available on a basic tier hub (%s)", op, t)
	}
	cost := 1.0
	if op == iothub.OpMethod {
		cost = float64(iothub.Meters(size, iothub.MethodMeter))
	}
	queue := time.Duration(r.tier.Queue)
	if op == iothub.OpJobDevice {
		queue = math.MaxInt64 // a job slows down to its throttle; it is never refused
	}
	if b := r.buckets[op]; b != nil {
		wait, ok := b.take(now, cost, queue)
		if !ok {
			r.throttled[string(op)]++
			e := iothub.Errorf(iothub.ThrottlingException, "%s throttled on %s×%d: %.4g per second", op, t, r.tier.Units, b.rate)
			e.RetryAfter = wait
			return delay, e
		}
		if wait > 0 {
			r.shaped[string(op)]++
			delay += wait
		}
	}
	if op == iothub.OpD2C || op == iothub.OpC2DSend {
		if day := now.Unix() / 86400; day != r.day {
			r.day, r.used = day, 0
		}
		meters := int64(iothub.Meters(size, t.MeterBytes()))
		if r.used+meters > t.DailyMessages(r.tier.Units) {
			r.throttled["dailyQuota"]++
			return delay, iothub.Errorf(iothub.IotHubQuotaExceeded, "the daily message quota of %s×%d (%d messages) is used up", t, r.tier.Units, t.DailyMessages(r.tier.Units))
		}
		r.used += meters
	}
	return delay, nil
}

// fault is a fault as the hub keeps it.
type fault struct {
	iothub.Fault
	code iothub.ErrorCode // of a fail fault
}

// applies reports whether the fault concerns the identity (a module is
// concerned by its device's faults).
func (f *fault) applies(key string) bool {
	if f.DeviceID == "" || f.DeviceID == "*" {
		return true
	}
	d, _, _ := strings.Cut(key, "/")
	return strings.EqualFold(d, f.DeviceID) || strings.EqualFold(key, f.DeviceID)
}

// hit counts a use; a fault with a count ends at its last.
func (f *fault) hit(now time.Time) {
	f.Hits++
	if f.Count > 0 && f.Hits >= f.Count {
		f.Active, f.Ends = false, now
	}
}

// expireLocked ends the faults whose time is up.
func (r *resilience) expireLocked(now time.Time) {
	changed := false
	for _, f := range r.faults {
		if f.Active && !f.Ends.IsZero() && !now.Before(f.Ends) {
			f.Active = false
			changed = true
		}
	}
	if changed {
		r.refreshOnLocked()
	}
}

// AddFault starts a fault and returns it as listed. Disconnect, restart
// and expireToken act at once: they close connections.
func (h *Hub) AddFault(in iothub.Fault) (iothub.Fault, error) {
	f := &fault{Fault: iothub.Fault{Kind: in.Kind, DeviceID: in.DeviceID, Operation: in.Operation, ErrorCode: in.ErrorCode,
		Count: in.Count, Delay: in.Delay, Duration: in.Duration}}
	if !slices.Contains(iothub.FaultKinds, f.Kind) {
		return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "unknown fault kind %q; want one of %v", f.Kind, iothub.FaultKinds)
	}
	if f.Operation != "" {
		op, err := iothub.ParseOperation(string(f.Operation))
		if err != nil {
			return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "%v", err)
		}
		f.Operation = op
	}
	switch f.Kind {
	case iothub.FaultFail, iothub.FaultDrop:
		if f.Operation == "" {
			return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "a %s fault needs an operation, one of %v", f.Kind, iothub.Operations)
		}
		if f.Kind == iothub.FaultDrop && f.Operation != iothub.OpD2C && f.Operation != iothub.OpC2DSend {
			return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "a drop fault drops messages: operation d2c or c2dSend")
		}
		code, err := f.FaultErrorCode()
		if err != nil || code.HTTPStatus() < 400 {
			return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "errorCode %q is not an IoT Hub error code", f.ErrorCode)
		}
		f.code = code
	case iothub.FaultDelay:
		if f.Delay <= 0 {
			return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "a delay fault needs a positive delay")
		}
	case iothub.FaultRefuseConnects:
		if f.Duration <= 0 && f.Count <= 0 {
			return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "a refuseConnects fault needs a duration or a count")
		}
	case iothub.FaultExpireToken:
		if f.DeviceID == "" || f.DeviceID == "*" {
			return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "an expireToken fault names a device")
		}
		if f.Duration <= 0 {
			f.Duration = iothub.Duration(time.Hour) // tokens made before it have expired by then
		}
	}
	if f.Count < 0 || f.Duration < 0 {
		return iothub.Fault{}, iothub.Errorf(iothub.ArgumentInvalid, "count and duration cannot be negative")
	}
	now := h.now()
	f.Created, f.Active = now, true
	if f.Duration > 0 {
		f.Ends = now.Add(time.Duration(f.Duration))
	}
	oneShot := f.Kind == iothub.FaultDisconnect || f.Kind == iothub.FaultRestart
	if oneShot {
		f.Active, f.Ends = false, now
	}
	r := &h.res
	r.mu.Lock()
	r.nextID++
	f.ID = "f-" + strconv.Itoa(r.nextID)
	r.faults = append(r.faults, f)
	if len(r.faults) > 100 {
		r.faults = slices.Delete(r.faults, 0, len(r.faults)-100)
	}
	r.refreshOnLocked()
	out := f.Fault
	r.mu.Unlock()
	h.log.Info("fault", "id", out.ID, "kind", out.Kind, "device", out.DeviceID, "operation", out.Operation)
	switch f.Kind {
	case iothub.FaultDisconnect, iothub.FaultExpireToken:
		code, why := iothub.ServiceUnavailable, "closed by fault "+out.ID
		if f.Kind == iothub.FaultExpireToken {
			code, why = iothub.IotHubUnauthorized, "the token expired (fault "+out.ID+")"
		}
		out.Hits = h.closeConnections(f.applies, iothub.Errorf(code, "%s", why))
	case iothub.FaultRestart:
		out.Hits = h.closeConnections(func(string) bool { return true }, iothub.Errorf(iothub.ServiceUnavailable, "the hub restarted (fault %s)", out.ID))
	}
	if oneShot || f.Kind == iothub.FaultExpireToken {
		r.mu.Lock()
		f.Hits = out.Hits
		r.mu.Unlock()
	}
	return out, nil
}

// closeConnections closes the connection of every identity match
// accepts and returns how many it closed.
func (h *Hub) closeConnections(match func(key string) bool, reason *iothub.Error) int {
	h.mu.RLock()
	var links []Link
	for key, e := range h.devices {
		if !match(key) {
			continue
		}
		e.connMu.Lock()
		if e.conn != nil {
			links = append(links, e.conn.link)
		}
		e.connMu.Unlock()
	}
	h.mu.RUnlock()
	for _, l := range links {
		l.Close(reason)
	}
	return len(links)
}

// Faults lists the faults, newest last, active or ended.
func (h *Hub) Faults() []iothub.Fault {
	r := &h.res
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(h.now())
	out := make([]iothub.Fault, len(r.faults))
	for i, f := range r.faults {
		out[i] = f.Fault
	}
	return out
}

// ClearFault ends a fault ("" ends them all).
func (h *Hub) ClearFault(id string) error {
	r := &h.res
	r.mu.Lock()
	defer r.mu.Unlock()
	found := false
	for _, f := range r.faults {
		if id == "" || f.ID == id {
			found = true
			if f.Active {
				f.Active, f.Ends = false, h.now()
			}
		}
	}
	r.refreshOnLocked()
	if !found && id != "" {
		return iothub.Errorf(iothub.NotFound, "no fault %s", id)
	}
	return nil
}

// tokenRevoked reports whether an expireToken fault refuses a token of
// the identity that expires at exp: one made before the fault, with the
// SDKs' lifetime of an hour at most. Tokens name their expiry in whole
// seconds, so one made in the second of the fault passes.
func (h *Hub) tokenRevoked(key string, exp time.Time) bool {
	r := &h.res
	if !r.on.Load() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(h.now())
	for _, f := range r.faults {
		if f.Active && f.Kind == iothub.FaultExpireToken && f.applies(key) && exp.Before(f.Created.Truncate(time.Second).Add(time.Hour)) {
			f.Hits++
			return true
		}
	}
	return false
}
