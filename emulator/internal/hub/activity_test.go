package hub_test

import (
	"fmt"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// Ensure that the activity feed keeps the newest 1,000 entries, answers
// those after a sequence number oldest first, and at most the newest
// limit of them.
func TestActivityFeed(t *testing.T) {
	h := mustOpen(t, hub.Options{})
	if got := h.Activities(0, 500); len(got) != 0 {
		t.Fatalf("an empty feed answered %d", len(got))
	}
	for i := 1; i <= 1500; i++ {
		h.Record(hub.ActivityMethod, "d/m", fmt.Sprint(i), 200)
	}
	tests := []struct {
		after       int64
		limit       int
		first, last int64
	}{
		{0, 500, 1001, 1500},
		{0, 5000, 501, 1500},
		{1400, 500, 1401, 1500},
		{1499, 500, 1500, 1500},
		{1500, 500, 0, 0},
		{100, 1000, 501, 1500},
	}
	for _, tt := range tests {
		got := h.Activities(tt.after, tt.limit)
		want := int(tt.last - tt.first + 1)
		if tt.first == 0 {
			want = 0
		}
		if len(got) != want || (want > 0 && (got[0].Seq != tt.first || got[len(got)-1].Seq != tt.last)) {
			t.Errorf("after %d, limit %d: %d entries; want %d to %d", tt.after, tt.limit, len(got), tt.first, tt.last)
			continue
		}
		for i, a := range got {
			if a.Seq != tt.first+int64(i) || a.Detail != fmt.Sprint(a.Seq) || a.DeviceID != "d" || a.ModuleID != "m" {
				t.Fatalf("after %d: entry %d is %+v", tt.after, i, a)
			}
		}
	}
}
