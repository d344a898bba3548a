package bolt_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// populate stores n twins: ten regions, one device in a hundred tagged
// for reboot, four firmware versions, and a reported rebootTime on the
// tagged ones.
func populate(b *testing.B, st *bolt.Store, n int) {
	b.Helper()
	regions := []string{"us-east", "us-west", "eu-north", "eu-west", "asia", "africa", "oceania", "sa", "ca", "me"}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rec := &hub.Record{Device: iothub.Device{DeviceID: fmt.Sprintf("dev-%06d", i), Status: iothub.StatusEnabled,
					Authentication: iothub.Authentication{Type: iothub.AuthSAS}}}
				rec.Twin.Version = 3
				rec.Twin.Tags = map[string]any{"location": map[string]any{"region": regions[i%len(regions)]}, "reboot": i%100 == 0}
				reported := map[string]any{"firmware": map[string]any{"version": fmt.Sprintf("1.%d.0", i%4), "status": "current"},
					"temperature": json.Number(fmt.Sprint(20 + i%15))}
				if i%100 == 0 {
					reported["rebootTime"] = time.Date(2026, 1, 1, 0, 0, i%60, 0, time.UTC).Format(time.RFC3339)
				}
				rec.Twin.Properties.Reported = iothub.TwinCollection{Props: reported, Version: 2, Metadata: &iothub.Metadata{}}
				rec.Twin.Properties.Desired = iothub.TwinCollection{Props: map[string]any{}, Version: 1, Metadata: &iothub.Metadata{}}
				if err := st.Put(rec); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
}

func reportP50(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkQuery100k measures queries over 100,000 twins beside the
// reference: reading every twin once from bbolt.
func BenchmarkQuery100k(b *testing.B) {
	const n = 100_000
	st, err := bolt.Open(filepath.Join(b.TempDir(), "q.db"), bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	populate(b, st, n)
	b.Run("reference-read-all-from-bbolt", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			count := 0
			if err := st.Load(func(hub.Record) error { count++; return nil }); err != nil || count != n {
				b.Fatalf("read %d twins: %v", count, err)
			}
			lat = append(lat, time.Since(t0))
		}
		reportP50(b, lat)
	})
	h, err := hub.New(st, st, hub.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	queries := map[string]struct {
		q    string
		rows int
	}{
		"selective-tag-and-reported": {"SELECT * FROM devices WHERE tags.location.region = 'us-east' AND properties.reported.rebootTime > '2026-01-01T00:00:30Z'", 0},
		"group-by-count":             {"SELECT properties.reported.firmware.version AS version, COUNT() AS n FROM devices GROUP BY properties.reported.firmware.version", 4},
	}
	for name, q := range queries {
		b.Run(name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				res, err := h.Query(q.q)
				if err != nil || (q.rows > 0 && len(res.Rows) != q.rows) {
					b.Fatalf("%d rows, %v", len(res.Rows), err)
				}
				lat = append(lat, time.Since(t0))
			}
			reportP50(b, lat)
		})
	}
}
