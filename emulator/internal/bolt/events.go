package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// The telemetry log: bucket "events" holds a bucket per partition, named
// by its decimal number, mapping the 8-byte big-endian sequence number to
// the 8-byte big-endian enqueued time (Unix nanoseconds) followed by the
// event as JSON. Keys sort in sequence order, so eviction deletes from the
// first key and a read seeks to its start.
var bucketEvents = []byte("events")

// bucketEventSizes maps a partition's name to the bytes of its events,
// 8 bytes big-endian, kept with every append and eviction.
var bucketEventSizes = []byte("eventSizes")

func partitionName(p int) []byte { return fmt.Appendf(nil, "%d", p) }

func seqKey(seq int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(seq)) }

// AppendEvent implements hub.EventLog.
func (s *Store) AppendEvent(ev hub.Event, evictBefore time.Time, keep, keepBytes int64) func() (int64, error) {
	val, err := json.Marshal(ev)
	if err != nil {
		return func() (int64, error) { return 0, err }
	}
	val = append(binary.BigEndian.AppendUint64(nil, uint64(ev.Enqueued.UnixNano())), val...)
	var begin int64
	done := s.enqueue(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketEvents)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists(partitionName(ev.Partition))
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(ev.Sequence), val); err != nil {
			return err
		}
		sizes, err := tx.CreateBucketIfNotExists(bucketEventSizes)
		if err != nil {
			return err
		}
		var size int64
		if v := sizes.Get(partitionName(ev.Partition)); len(v) == 8 {
			size = int64(binary.BigEndian.Uint64(v)) + int64(len(val))
		} else {
			// A log written before sizes were kept: count it once.
			b.ForEach(func(_, v []byte) error { size += int64(len(v)); return nil })
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			seq := int64(binary.BigEndian.Uint64(k))
			old := len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) < evictBefore.UnixNano()
			if seq == ev.Sequence || (!old && ev.Sequence-seq < keep && (keepBytes <= 0 || size <= keepBytes)) {
				begin = seq
				break
			}
			size -= int64(len(v))
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return sizes.Put(partitionName(ev.Partition), binary.BigEndian.AppendUint64(nil, uint64(size)))
	})
	return func() (int64, error) { return begin, <-done }
}

// ReadEvents implements hub.EventLog.
func (s *Store) ReadEvents(partition int, from int64, max int) ([]hub.Event, error) {
	var out []hub.Event
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := partitionBucket(tx, partition)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil && len(out) < max; k, v = c.Next() {
			ev, err := decodeEvent(partition, k, v)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// EventBounds implements hub.EventLog.
func (s *Store) EventBounds(partition int) (first, last int64, lastTime time.Time, err error) {
	first, last = 0, -1
	err = s.db.View(func(tx *bbolt.Tx) error {
		b := partitionBucket(tx, partition)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, _ := c.First()
		if k == nil {
			return nil
		}
		first = int64(binary.BigEndian.Uint64(k))
		k, v := c.Last()
		last = int64(binary.BigEndian.Uint64(k))
		if len(v) >= 8 {
			lastTime = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		}
		return nil
	})
	return first, last, lastTime, err
}

func partitionBucket(tx *bbolt.Tx, partition int) *bbolt.Bucket {
	root := tx.Bucket(bucketEvents)
	if root == nil {
		return nil
	}
	return root.Bucket(partitionName(partition))
}

func decodeEvent(partition int, k, v []byte) (hub.Event, error) {
	var ev hub.Event
	if len(k) != 8 || len(v) < 8 {
		return ev, fmt.Errorf("event record of %d and %d bytes", len(k), len(v))
	}
	if err := json.Unmarshal(v[8:], &ev); err != nil {
		return ev, fmt.Errorf("event %x: %w", k, err)
	}
	ev.Partition = partition
	ev.Sequence = int64(binary.BigEndian.Uint64(k))
	ev.Enqueued = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
	return ev, nil
}
