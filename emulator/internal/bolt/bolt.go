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
// Caveats: a bbolt file can be opened by one process at a time; Open waits
// up to a second for the lock and then fails.
package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

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

// Open opens or creates the store at path.
func Open(path string, opts Options) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
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
			return fmt.Errorf("schema version %q, want %q", v, schemaVersion)
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
func (s *Store) Delete(key string) error {
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevices).Delete([]byte(key))
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
func (s *Store) PutJob(j *iothub.Job) error {
	v, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job %q: %w", j.JobID, err)
	}
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketJobs).Put([]byte(j.JobID), v)
	})
}

// PutDeviceJob stores one device's record of a job durably.
func (s *Store) PutDeviceJob(dj *iothub.DeviceJob) error {
	v, err := json.Marshal(dj)
	if err != nil {
		return fmt.Errorf("encode device job %q/%q: %w", dj.JobID, dj.DeviceID, err)
	}
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevJobs).Put([]byte(dj.JobID+"\x00"+dj.DeviceID), v)
	})
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
