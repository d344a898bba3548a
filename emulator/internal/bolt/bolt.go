// Package bolt stores the hub's device records in a bbolt file. It is the
// only package that imports go.etcd.io/bbolt.
//
// Layout: bucket "devices" maps an identity's hub.Key (the device id, or
// "{deviceId}/{moduleId}") to its record as JSON (the
// identity, the twin and the persistent session, written together so they
// never diverge); bucket "jobs" maps a job id to the job as JSON; bucket
// "deviceJobs" maps "{jobId}\x00{deviceId}" to one device's record of a job;
// bucket "configurations" maps a configuration id to it as JSON; bucket
// "meta" holds "schema" = "1".
//
// Writes go through one writer goroutine: concurrent writes share one
// transaction and one fsync, and each returns only after that commit, so an
// acknowledged write survives a crash.
//
// Open refuses what is not a sound store of this emulator, with a message
// that says what to do, rather than start on it: an empty file, a file
// that is not bbolt, another program's bbolt file, a file whose pages do
// not check (bbolt would panic on them later), one locked by another
// process (bbolt's file lock, waited for a second). Check verifies a store
// without opening it for writing (emulator check).
package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

var (
	bucketDevices = []byte("devices")
	bucketMeta    = []byte("meta")
	bucketJobs    = []byte("jobs")
	bucketDevJobs = []byte("deviceJobs")
	bucketConfigs = []byte("configurations")
	keySchema     = []byte("schema")
)

const schemaVersion = "1"

// Store is a hub.Store in a bbolt file.
type Store struct {
	db      *bbolt.DB
	wake    chan struct{} // tells the writer the queue is not empty
	stopped chan struct{} // closed when the writer is done

	mu     sync.Mutex
	queue  []write // guarded by mu
	closed bool    // guarded by mu
}

// Options tunes a Store. The zero value is the default.
type Options struct {
	// NoSync skips fsync on commit: faster, and not durable across a power
	// loss. For tests and benchmarks of everything but durability.
	NoSync bool
}

// ErrNotAStore is the error of a file that is not a sound store of this
// emulator.
var ErrNotAStore = errors.New("not a sound emulator store")

// Open opens or creates the store at path.
func Open(path string, opts Options) (*Store, error) {
	db, err := openChecked(path, &bbolt.Options{Timeout: time.Second, NoSync: opts.NoSync})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			var foreign []string
			tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
				foreign = append(foreign, string(name))
				return nil
			})
			if len(foreign) > 0 {
				return fmt.Errorf("%w: it is a bbolt file of another program (buckets %q and no emulator metadata); choose another -data-dir", ErrNotAStore, foreign)
			}
		}
		for _, b := range [][]byte{bucketDevices, bucketJobs, bucketDevJobs, bucketConfigs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("%w: schema version %q, this emulator reads %q", ErrNotAStore, v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go s.writer()
	return s, nil
}

// openChecked opens path with bbolt after making sure bbolt will not
// panic on it: an existing file must be non-empty, bbolt's, unlocked, and
// pass bbolt's page check. A corrupt page found later would crash the
// emulator on a write; found here, it is a message.
func openChecked(path string, o *bbolt.Options) (*bbolt.DB, error) {
	fi, statErr := os.Stat(path)
	if statErr == nil && fi.Size() == 0 {
		return nil, fmt.Errorf("open store %s: %w: the file is empty (0 bytes); remove it to start with an empty hub", path, ErrNotAStore)
	}
	db, err := openRecovered(path, o)
	switch {
	case errors.Is(err, bberrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: another emulator (or another process) has it open: stop that one, or give this one another -data-dir", path)
	case err != nil && statErr == nil:
		return nil, fmt.Errorf("open store %s: %w: %v; move it aside to start with an empty hub, or run emulator check for details", path, ErrNotAStore, err)
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if statErr != nil {
		return db, nil // new
	}
	if errs := check(db); len(errs) > 0 {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w: the file is corrupt (%d problems, the first: %v); restore a copy, or move it aside to start with an empty hub", path, ErrNotAStore, len(errs), errs[0])
	}
	return db, nil
}

// openRecovered is bbolt.Open, with a panic on a damaged file as an error.
func openRecovered(path string, o *bbolt.Options) (db *bbolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("damaged file: %v", r)
		}
	}()
	return bbolt.Open(path, 0o600, o)
}

// check runs bbolt's consistency check of every page, a panic on a
// damaged page being one more problem.
func check(db *bbolt.DB) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			errs = append(errs, fmt.Errorf("damaged page: %v", r))
		}
	}()
	db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	return errs
}

// Check verifies the store at path, read-only: bbolt's page check, then
// every record decoded. It answers the problems found, none for a sound
// store, and how many records it holds.
func Check(path string) (records int, problems []error, err error) {
	if _, err := os.Stat(path); err != nil {
		return 0, nil, err
	}
	db, err := openChecked(path, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return 0, []error{err}, nil
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			problems = append(problems, fmt.Errorf("%w: no emulator metadata", ErrNotAStore))
			return nil
		}
		b := tx.Bucket(bucketDevices)
		if b == nil {
			problems = append(problems, errors.New("no devices bucket"))
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			records++
			var rec hub.Record
			if err := decodeJSON(v, &rec); err != nil {
				problems = append(problems, fmt.Errorf("record %q: %w", k, err))
			}
			return nil
		})
	})
	return records, problems, err
}

// Close commits the writes already queued and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	s.mu.Unlock()
	<-s.stopped
	return s.db.Close()
}

// Load calls fn for each stored record, in device-id order. Records are
// decoded on every CPU; fn is called from one goroutine at a time.
func (s *Store) Load(fn func(hub.Record) error) error {
	type item struct {
		key, val []byte
		rec      hub.Record
		err      error
		done     chan struct{}
	}
	work := make(chan *item, 256)
	ordered := make(chan *item, 256)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := decodeJSON(it.val, &it.rec); err != nil {
					it.err = fmt.Errorf("device %q: %w", it.key, err)
				}
				close(it.done)
			}
		}()
	}
	var fnErr error
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for it := range ordered {
			<-it.done
			if fnErr == nil && it.err != nil {
				fnErr = it.err
			}
			if fnErr == nil {
				fnErr = fn(it.rec)
			}
		}
	}()
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			// bbolt's slices are valid only inside the transaction: copy.
			it := &item{key: bytes.Clone(k), val: bytes.Clone(v), done: make(chan struct{})}
			ordered <- it
			work <- it
			return nil
		})
	})
	close(work)
	close(ordered)
	wg.Wait()
	<-consumed
	if err != nil {
		return err
	}
	return fnErr
}

// Put stores rec durably, sharing the commit with concurrent Puts.
func (s *Store) Put(rec *hub.Record) error {
	if rec.Device.DeviceID == "" {
		return errors.New("bolt: record without a device id")
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode device %q: %w", rec.Device.DeviceID, err)
	}
	key := []byte(hub.Key(rec.Device.DeviceID, rec.ModuleID))
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevices).Put(key, v)
	})
}

// Delete removes the record of an identity, named by its hub.Key.
func (s *Store) Delete(keys ...string) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Len returns the number of stored records.
func (s *Store) Len() (int, error) {
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketDevices).Stats().KeyN
		return nil
	})
	return n, err
}

// PutJob stores a job durably.
func (s *Store) PutJob(j *iothub.Job) error { return s.PutJobDevices(j, nil) }

// PutDeviceJob stores one device's record of a job durably.
func (s *Store) PutDeviceJob(dj *iothub.DeviceJob) error {
	v, err := encodeDeviceJob(dj)
	if err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevJobs).Put(deviceJobKey(dj), v)
	})
}

// PutJobDevices stores a job and its device records in one commit.
func (s *Store) PutJobDevices(j *iothub.Job, djs []*iothub.DeviceJob) error {
	jv, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job %q: %w", j.JobID, err)
	}
	vs := make([][]byte, len(djs))
	for i, dj := range djs {
		if vs[i], err = encodeDeviceJob(dj); err != nil {
			return err
		}
	}
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDevJobs)
		for i, dj := range djs {
			if err := b.Put(deviceJobKey(dj), vs[i]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketJobs).Put([]byte(j.JobID), jv)
	})
}

// deviceJobKey is a device job's key: "{jobId}\x00{deviceId}".
func deviceJobKey(dj *iothub.DeviceJob) []byte { return []byte(dj.JobID + "\x00" + dj.DeviceID) }

func encodeDeviceJob(dj *iothub.DeviceJob) ([]byte, error) {
	v, err := json.Marshal(dj)
	if err != nil {
		return nil, fmt.Errorf("encode device job %q/%q: %w", dj.JobID, dj.DeviceID, err)
	}
	return v, nil
}

// LoadJobs calls fn for each job with its device records.
func (s *Store) LoadJobs(fn func(iothub.Job, []iothub.DeviceJob) error) error {
	return s.db.View(func(tx *bbolt.Tx) error {
		dc := tx.Bucket(bucketDevJobs).Cursor()
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var j iothub.Job
			if err := decodeJSON(v, &j); err != nil {
				return fmt.Errorf("job %q: %w", k, err)
			}
			var djs []iothub.DeviceJob
			prefix := append(append([]byte{}, k...), 0)
			for dk, dv := dc.Seek(prefix); dk != nil && bytes.HasPrefix(dk, prefix); dk, dv = dc.Next() {
				var dj iothub.DeviceJob
				if err := decodeJSON(dv, &dj); err != nil {
					return fmt.Errorf("device job %q: %w", dk, err)
				}
				djs = append(djs, dj)
			}
			return fn(j, djs)
		})
	})
}

// PutConfiguration stores a configuration durably.
func (s *Store) PutConfiguration(c *iothub.Configuration) error {
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode configuration %q: %w", c.ID, err)
	}
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketConfigs).Put([]byte(c.ID), v)
	})
}

// DeleteConfiguration removes a configuration durably.
func (s *Store) DeleteConfiguration(id string) error {
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketConfigs).Delete([]byte(id))
	})
}

// LoadConfigurations calls fn for each stored configuration.
func (s *Store) LoadConfigurations(fn func(iothub.Configuration) error) error {
	return s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketConfigs).ForEach(func(k, v []byte) error {
			var c iothub.Configuration
			if err := decodeJSON(v, &c); err != nil {
				return fmt.Errorf("configuration %q: %w", k, err)
			}
			return fn(c)
		})
	})
}

// decodeJSON decodes v keeping numbers exact, as twin values need.
func decodeJSON(v []byte, out any) error {
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	return d.Decode(out)
}
