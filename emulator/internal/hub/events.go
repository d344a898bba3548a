package hub

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"
)

// Event is a device-to-cloud message in the telemetry log, the stream the
// built-in Event Hubs-compatible endpoint serves (next-wave-protocols §1.6).
type Event struct {
	Partition    int               `json:"-"`
	Sequence     int64             `json:"-"`
	Enqueued     time.Time         `json:"-"`
	DeviceID     string            `json:"deviceId"`
	ModuleID     string            `json:"moduleId,omitempty"`
	GenerationID string            `json:"generationId,omitempty"`
	AuthType     string            `json:"authType,omitempty"` // "sas" or "x509"
	ModelID      string            `json:"modelId,omitempty"`
	Properties   map[string]string `json:"properties,omitempty"` // the message's property bag, system properties included
	Body         []byte            `json:"body"`
}

// EventLog stores the telemetry log: per partition, events in sequence
// order, the oldest evicted by age, count and size.
type EventLog interface {
	// AppendEvent queues ev for the next commit, evicting from the head of
	// its partition events enqueued before evictBefore, those past the
	// newest keep, and the oldest while the partition holds more than
	// keepBytes; it returns a wait that returns once the commit is
	// durable, with the partition's first sequence number then. Appends
	// are committed in the order they were queued.
	AppendEvent(ev Event, evictBefore time.Time, keep, keepBytes int64) (wait func() (begin int64, err error))
	// ReadEvents returns up to max events of partition from sequence
	// number from on.
	ReadEvents(partition int, from int64, max int) ([]Event, error)
	// EventBounds returns a partition's first and last sequence numbers,
	// and the enqueued time of the last; last < first when it is empty.
	EventBounds(partition int) (first, last int64, lastTime time.Time, err error)
}

// partition is one partition of the log as the hub tracks it.
type partition struct {
	mu       sync.Mutex
	next     int64         // guarded by mu; the sequence number of the next append
	visible  int64         // guarded by mu; events up to here are durable and readable
	begin    int64         // guarded by mu; the first sequence number kept
	lastTime time.Time     // guarded by mu; enqueued time of the last visible event
	stamped  time.Time     // guarded by mu; enqueued time of the last append
	changed  chan struct{} // guarded by mu; closed and replaced when visible moves
}

// events is the hub's telemetry log state.
type events struct {
	log        EventLog
	partitions []*partition
	created    time.Time
}

func (h *Hub) openEvents() error {
	h.ev.log = h.opts.Events
	h.ev.created = h.now()
	if h.ev.log == nil {
		return nil
	}
	for i := range h.opts.Partitions {
		first, last, at, err := h.ev.log.EventBounds(i)
		if err != nil {
			return err
		}
		h.ev.partitions = append(h.ev.partitions, &partition{next: last + 1, visible: last, begin: first, lastTime: at, stamped: at, changed: make(chan struct{})})
	}
	return nil
}

// PartitionOf is the partition a device's events go to: a stable hash of
// the device id (next-wave-protocols §1.7; apps must not rely on it).
func (h *Hub) PartitionOf(deviceID string) int {
	f := fnv.New32a()
	f.Write([]byte(deviceID))
	return int(f.Sum32() % uint32(h.opts.Partitions))
}

// Partitions is how many partitions the telemetry log has.
func (h *Hub) Partitions() int { return h.opts.Partitions }

// EventsCreated is when the built-in endpoint was created: the hub's
// start, for an emulator.
func (h *Hub) EventsCreated() time.Time { return h.ev.created }

// ErrNoEventLog is returned by the event reads of a hub without a log.
var ErrNoEventLog = errors.New("hub: no telemetry log")

// appendEvent queues ev for its partition and returns a wait that
// returns once it is durable and readable. The event takes its sequence
// number now, so appends of one device are stored in call order. Call
// the wait once or more; an event whose wait is never called becomes
// readable with the next one that is.
func (h *Hub) appendEvent(ev Event) func() error {
	if h.ev.log == nil {
		return func() error { return nil }
	}
	ev.Partition = h.PartitionOf(ev.DeviceID)
	p := h.ev.partitions[ev.Partition]
	p.mu.Lock()
	// Enqueued times have the millisecond resolution of the annotation
	// consumers filter on, and never go back within a partition, so a
	// start by enqueued time means the same thing to the log and to them.
	ev.Enqueued = ev.Enqueued.Truncate(time.Millisecond)
	if ev.Enqueued.Before(p.stamped) {
		ev.Enqueued = p.stamped
	}
	p.stamped = ev.Enqueued
	ev.Sequence = p.next
	p.next++
	// Queued under the lock, so commits follow sequence order.
	wait := h.ev.log.AppendEvent(ev, ev.Enqueued.Add(-h.opts.Retention), h.opts.RetainEvents, h.opts.RetainBytes/int64(len(h.ev.partitions)))
	p.mu.Unlock()
	return sync.OnceValue(func() error {
		begin, err := wait()
		if err != nil {
			return err
		}
		p.mu.Lock()
		if ev.Sequence > p.visible {
			p.visible, p.lastTime = ev.Sequence, ev.Enqueued
			close(p.changed)
			p.changed = make(chan struct{})
		}
		p.begin = max(p.begin, begin)
		p.mu.Unlock()
		return nil
	})
}

// PartitionInfo describes a partition of the telemetry log.
type PartitionInfo struct {
	Begin, Last int64     // sequence numbers; Last < Begin when empty
	LastTime    time.Time // the last event's enqueued time
}

// Empty reports whether the partition holds no event.
func (p PartitionInfo) Empty() bool { return p.Last < p.Begin }

// Partition returns what partition i holds.
func (h *Hub) Partition(i int) (PartitionInfo, error) {
	if h.ev.log == nil {
		return PartitionInfo{}, ErrNoEventLog
	}
	p := h.ev.partitions[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return PartitionInfo{Begin: p.begin, Last: p.visible, LastTime: p.lastTime}, nil
}

// Events returns up to max durable events of partition i from sequence
// number from on, waiting until there is one or ctx ends.
func (h *Hub) Events(ctx context.Context, i int, from int64, max int) ([]Event, error) {
	if h.ev.log == nil {
		return nil, ErrNoEventLog
	}
	p := h.ev.partitions[i]
	for {
		p.mu.Lock()
		visible, begin, changed := p.visible, p.begin, p.changed
		p.mu.Unlock()
		from = max64(from, begin)
		if from <= visible {
			evs, err := h.ev.log.ReadEvents(i, from, min(max, int(visible-from+1)))
			if err != nil || len(evs) > 0 {
				return evs, err
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// FirstAfter returns the sequence number of the first event of partition
// i enqueued after t (at or after, with inclusive), or the next one to
// come.
func (h *Hub) FirstAfter(i int, t time.Time, inclusive bool) (int64, error) {
	info, err := h.Partition(i)
	if err != nil {
		return 0, err
	}
	for seq := info.Begin; seq <= info.Last; {
		evs, err := h.ev.log.ReadEvents(i, seq, 256)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			if ev.Enqueued.After(t) || (inclusive && ev.Enqueued.Equal(t)) {
				return ev.Sequence, nil
			}
			seq = ev.Sequence + 1
		}
	}
	return info.Last + 1, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
