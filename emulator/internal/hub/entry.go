package hub

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// entry is one device in memory.
type entry struct {
	id string // Key(deviceID, moduleID)

	// mu serialises writers of rec; it is held across the store commit.
	mu  sync.Mutex
	rec atomic.Pointer[Record] // immutable snapshot of the persisted state

	live live // connection state and activity, changed without a commit

	connMu  sync.Mutex
	conn    *Conn         // guarded by connMu; the current connection, or nil
	changed chan struct{} // guarded by connMu; closed and replaced when conn or its subscriptions change

	// gone is set, under mu and connMu, when the identity is deleted:
	// no writer commits and no connection attaches after it.
	gone atomic.Bool
}

func newEntry(rec *Record) *entry {
	e := &entry{id: Key(rec.Device.DeviceID, rec.ModuleID), changed: make(chan struct{})}
	e.rec.Store(rec)
	e.live.lastActivity.Store(rec.Device.LastActivityTime.UnixNano())
	if rec.Device.LastActivityTime.IsZero() {
		e.live.lastActivity.Store(0)
	}
	e.live.stateUpdated.Store(timeNano(rec.Device.ConnectionStateUpdatedTime))
	return e
}

func timeNano(t iothub.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanoTime(n int64) iothub.Time {
	if n == 0 {
		return iothub.Time{}
	}
	return iothub.NewTime(time.Unix(0, n))
}

// live is the part of a device's state that changes with its connection.
type live struct {
	connected    atomic.Bool
	lastActivity atomic.Int64 // unix nanoseconds; 0 = never
	stateUpdated atomic.Int64 // connectionStateUpdatedTime, unix nanoseconds
}

// stamp copies the live state into a record about to be persisted.
func (l *live) stamp(r *Record) {
	r.Device.LastActivityTime = nanoTime(l.lastActivity.Load())
	r.Device.ConnectionStateUpdatedTime = nanoTime(l.stateUpdated.Load())
	r.Device.ConnectionState = iothub.Disconnected
	if l.connected.Load() {
		r.Device.ConnectionState = iothub.Connected
	}
}

// device renders the identity with its live state.
func (e *entry) device() iothub.Device {
	r := Record{Device: e.rec.Load().Device}
	e.live.stamp(&r)
	return r.Device
}

// clone returns a deep copy of the current record for a writer to change.
func (e *entry) clone() *Record {
	cur := e.rec.Load()
	next := *cur
	next.Twin.Tags = deepCopyMap(cur.Twin.Tags)
	next.Twin.Properties.Desired = copyCollection(cur.Twin.Properties.Desired)
	next.Twin.Properties.Reported = copyCollection(cur.Twin.Properties.Reported)
	return &next
}

// notify wakes everyone waiting for a connection change. Caller holds connMu.
func (e *entry) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// current returns the device's connection and the channel closed at its
// next change.
func (e *entry) current() (*Conn, <-chan struct{}) {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	return e.conn, e.changed
}
