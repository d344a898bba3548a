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

// activityFeed is a ring of the last activities: activity Seq s is at
// ring[s%activityKept]. Recording one, on every method call, overwrites
// the oldest; nothing moves.
type activityFeed struct {
	mu   sync.Mutex
	ring [activityKept]Activity // guarded by mu
	last int64                  // guarded by mu: the Seq of the newest, 0 for none
}

// Record adds an activity of identity key ("device" or "device/module",
// or "" for none) to the feed.
func (h *Hub) Record(kind ActivityKind, key, detail string, status int) {
	d, m, _ := strings.Cut(key, "/")
	f := &h.activity
	f.mu.Lock()
	f.last++
	f.ring[f.last%activityKept] = Activity{Seq: f.last, Time: h.now(), Kind: kind, DeviceID: d, ModuleID: m, Detail: detail, Status: status}
	f.mu.Unlock()
}

// Activities returns the activities after seq, oldest first, at most
// limit: the newest ones.
func (h *Hub) Activities(after int64, limit int) []Activity {
	f := &h.activity
	f.mu.Lock()
	defer f.mu.Unlock()
	first := max(after+1, f.last-int64(min(limit, activityKept))+1, 1)
	var out []Activity
	for s := first; s <= f.last; s++ {
		out = append(out, f.ring[s%activityKept])
	}
	return out
}
