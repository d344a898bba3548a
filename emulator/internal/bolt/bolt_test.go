package bolt_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/bolt"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// Compile-time check that the store is what the hub needs.
var (
	_ hub.Store        = (*bolt.Store)(nil)
	_ hub.ServiceStore = (*bolt.Store)(nil)
)

func mustOpen(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func record(t *testing.T, id, reported string) *hub.Record {
	t.Helper()
	props, err := iothub.DecodeObject([]byte(reported))
	if err != nil {
		t.Fatal(err)
	}
	r := &hub.Record{Device: iothub.Device{DeviceID: id, Status: iothub.StatusEnabled}, TwinETag: 1, Session: hub.SubMethods}
	r.Twin.Properties.Reported = iothub.TwinCollection{Props: props, Version: 2, Metadata: &iothub.Metadata{}}
	r.Twin.Tags = map[string]any{"n": json.Number("4503599627370495")}
	return r
}

func load(t *testing.T, st *bolt.Store) []hub.Record {
	t.Helper()
	var out []hub.Record
	if err := st.Load(func(r hub.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Ensure that records come back as stored, in id order, with exact numbers,
// after a reopen, and that Delete removes one.
func TestRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st := mustOpen(t, path)
	want := map[string]*hub.Record{}
	for _, id := range []string{"b", "a", "c"} {
		r := record(t, id, `{"big":12345678901234567,"x":{"y":[1,"z"]}}`)
		want[id] = r
		if err := st.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete("c"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = mustOpen(t, path)
	got := load(t, st)
	if len(got) != 2 || got[0].Device.DeviceID != "a" || got[1].Device.DeviceID != "b" {
		t.Fatalf("loaded %d records", len(got))
	}
	for _, r := range got {
		a, _ := json.Marshal(r)
		b, _ := json.Marshal(want[r.Device.DeviceID])
		if string(a) != string(b) {
			t.Fatalf("record changed:\n%s\n%s", a, b)
		}
	}
	if n, _ := st.Len(); n != 2 {
		t.Fatalf("Len = %d", n)
	}
	if err := st.Put(&hub.Record{}); err == nil {
		t.Fatal("a record without an id was stored")
	}
}

// Ensure that Load stops at fn's error and returns it.
func TestLoadStopsOnError(t *testing.T) {
	st := mustOpen(t, filepath.Join(t.TempDir(), "s.db"))
	for _, id := range []string{"a", "b", "c"} {
		st.Put(record(t, id, `{}`))
	}
	stop := errors.New("stop")
	calls := 0
	err := st.Load(func(hub.Record) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Load = %v after %d calls", err, calls)
	}
}

// Ensure that each job loads with its own device records only, even when
// one job id is a prefix of another.
func TestJobs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st := mustOpen(t, path)
	for _, j := range []string{"a", "ab"} {
		if err := st.PutJob(&iothub.Job{JobID: j, Type: iothub.JobScheduleDeviceMethod, Status: iothub.JobRunning}); err != nil {
			t.Fatal(err)
		}
	}
	for _, dj := range []iothub.DeviceJob{{JobID: "a", DeviceID: "d1"}, {JobID: "a", DeviceID: "d2"}, {JobID: "ab", DeviceID: "d1", Status: iothub.DeviceJobCompleted}} {
		if err := st.PutDeviceJob(&dj); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	st = mustOpen(t, path)
	got := map[string][]string{}
	err := st.LoadJobs(func(j iothub.Job, djs []iothub.DeviceJob) error {
		for _, dj := range djs {
			if dj.JobID != j.JobID {
				t.Errorf("job %s got %s's record", j.JobID, dj.JobID)
			}
			got[j.JobID] = append(got[j.JobID], dj.DeviceID+":"+string(dj.Status))
		}
		return nil
	})
	if err != nil || strings.Join(got["a"], ",") != "d1:,d2:" || strings.Join(got["ab"], ",") != "d1:completed" {
		t.Fatalf("jobs %v, %v", got, err)
	}
}

// Ensure that a file is locked by the process that opened it.
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	mustOpen(t, path)
	_, err := bolt.Open(path, bolt.Options{})
	if err == nil || !strings.Contains(err.Error(), "another emulator") {
		t.Fatalf("a second Open of the same file: %v; want it refused as open elsewhere", err)
	}
}

// Ensure that what is not a sound store is refused at Open with
// ErrNotAStore and a remedy, never with a panic, and left as it was: an
// empty file, a file that is not bbolt, another program's bbolt file, and
// a store whose pages were damaged; and that Check reports a sound store
// sound and a damaged one damaged.
func TestOpenRefusesWhatIsNotAStore(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	refused := func(path, want string) {
		t.Helper()
		before, _ := os.ReadFile(path)
		st, err := bolt.Open(path, bolt.Options{})
		if err == nil {
			st.Close()
			t.Fatalf("%s opened", filepath.Base(path))
		}
		if !errors.Is(err, bolt.ErrNotAStore) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v; want ErrNotAStore saying %q", filepath.Base(path), err, want)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("%s was changed by the refused Open", filepath.Base(path))
		}
	}
	refused(write("empty.db", nil), "empty")
	refused(write("text.db", bytes.Repeat([]byte("not a database "), 1000)), "move it aside")

	foreign := filepath.Join(dir, "foreign.db")
	db, err := bbolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("accounts")); return err })
	db.Close()
	refused(foreign, "another program")

	sound := filepath.Join(dir, "sound.db")
	st := mustOpen(t, sound)
	for i := range 500 {
		if err := st.Put(record(t, fmt.Sprintf("d%04d", i), fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 900)))); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	n, problems, err := bolt.Check(sound)
	if err != nil || n != 500 || len(problems) != 0 {
		t.Fatalf("Check of a sound store: %d records, %v, %v", n, problems, err)
	}
	// Damage the header of every page after the meta pages (bbolt
	// panics reading the freelist), then, in another copy, only the
	// elements of the leaf pages (bbolt opens it; its page check finds
	// the damage).
	good, _ := os.ReadFile(sound)
	page := os.Getpagesize()
	data := bytes.Clone(good)
	for off := 2 * page; off+16 <= len(data); off += page {
		copy(data[off:off+16], []byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0x07, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	refused(write("headers.db", data), "move it aside")
	data = bytes.Clone(good)
	leaves := 0
	for off := 2 * page; off+64 <= len(data); off += page {
		if data[off+8] == 0x02 && data[off+9] == 0 { // a leaf page's flags
			copy(data[off+16:off+64], bytes.Repeat([]byte{0xff}, 48))
			leaves++
		}
	}
	if leaves == 0 {
		t.Fatal("no leaf page to damage")
	}
	damaged := write("leaves.db", data)
	refused(damaged, "corrupt")
	if _, problems, err := bolt.Check(damaged); err != nil || len(problems) == 0 {
		t.Fatalf("Check of a damaged store: %v, %v; want problems", problems, err)
	}
}

// Ensure that concurrent writes share commits without losing one, that a
// write the file refuses fails alone, and that writes after Close fail.
func TestConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st := mustOpen(t, path)
	const n = 300
	errs := make(chan error, n+1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- st.Put(record(t, fmt.Sprintf("d%03d", i), `{"i":1}`))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// bbolt refuses keys over 32 KiB.
		if err := st.Put(record(t, strings.Repeat("k", 40000), `{}`)); err == nil {
			errs <- errors.New("an oversize key was stored")
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	if err := st.Put(record(t, "late", `{}`)); err == nil {
		t.Fatal("a write after Close succeeded")
	}
	st = mustOpen(t, path)
	if got := load(t, st); len(got) != n {
		t.Fatalf("%d records after reopen, want %d", len(got), n)
	}
}
