package bolt

import (
	"encoding/binary"

	"go.etcd.io/bbolt"
)

// The service-bound queues (feedback records, file notifications) live
// in bucket queues/{name}, keyed by their sequence number, big-endian, so
// a cursor reads them oldest first.
var bucketQueues = []byte("queues")

// PutQueued implements hub.ServiceStore: it stores an item durably.
func (s *Store) PutQueued(queue string, seq uint64, v []byte) error {
	return s.update(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketQueues)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(queue))
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
	})
}

// DeleteQueued implements hub.ServiceStore: it removes items durably;
// missing ones are no error.
func (s *Store) DeleteQueued(queue string, seqs ...uint64) error {
	return s.update(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketQueues)
		if root == nil {
			return nil
		}
		b := root.Bucket([]byte(queue))
		if b == nil {
			return nil
		}
		for _, seq := range seqs {
			if err := b.Delete(binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadQueued implements hub.ServiceStore: it calls fn for a queue's
// items, oldest first.
func (s *Store) LoadQueued(queue string, fn func(seq uint64, v []byte) error) error {
	return s.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketQueues)
		if root == nil {
			return nil
		}
		b := root.Bucket([]byte(queue))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error { return fn(binary.BigEndian.Uint64(k), v) })
	})
}
