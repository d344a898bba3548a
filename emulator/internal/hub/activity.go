package hub

import (
	"strings"
	"sync"
	"time"
)

// The activity feed: what the dashboard's live event list shows. The hub
// records connects, disconnects and method calls; the faces record the
// requests they refused (Record). The last activityKept are kept in
// memory; nothing is stored.

// ActivityKind is what happened.
type ActivityKind string

// The kinds of activity.
const (
	ActivityConnected    ActivityKind = "connected"
	ActivityDisconnected ActivityKind = "disconnected"
	ActivityMethod       ActivityKind = "method"
	ActivityError        ActivityKind = "error"
)

// Activity is one entry of the feed.
type Activity struct {
	Seq      int64        `json:"seq"`
	Time     time.Time    `json:"time"`
	Kind     ActivityKind `json:"kind"`
	DeviceID string       `json:"deviceId,omitempty"`
	ModuleID string       `json:"moduleId,omitempty"`
	// Detail says what, in a line: the method and its status, the
	// request and the error answered.
	Detail string `json:"detail"`
	// Status is a method's or an error's status, if any.
	Status int `json:"status,omitempty"`
}

const activityKept = 1000

// activityFeed is a ring of the last activities.
type activityFeed struct {
	mu   sync.Mutex
	ring []Activity // guarded by mu: the last activityKept, oldest first
	next int64      // guarded by mu: the Seq of the next activity
}

// Record adds an activity of identity key ("device" or "device/module",
// or "" for none) to the feed.
func (h *Hub) Record(kind ActivityKind, key, detail string, status int) {
	d, m, _ := strings.Cut(key, "/")
	f := &h.activity
	f.mu.Lock()
	f.next++
	a := Activity{Seq: f.next, Time: h.now(), Kind: kind, DeviceID: d, ModuleID: m, Detail: detail, Status: status}
	if len(f.ring) == activityKept {
		copy(f.ring, f.ring[1:])
		f.ring = f.ring[:activityKept-1]
	}
	f.ring = append(f.ring, a)
	f.mu.Unlock()
}

// Activities returns the activities after seq, oldest first, at most max.
func (h *Hub) Activities(after int64, max int) []Activity {
	f := &h.activity
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Activity
	for _, a := range f.ring {
		if a.Seq > after {
			out = append(out, a)
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}
