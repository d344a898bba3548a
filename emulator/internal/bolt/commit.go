package bolt

import (
	"errors"

	bbolt "go.etcd.io/bbolt"
)

// maxBatch bounds the writes of one transaction.
const maxBatch = 1000

// errClosed answers writes that arrive after Close.
var errClosed = errors.New("bolt: store closed")

// write is one queued change and where its outcome goes.
type write struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// update applies fn in a transaction shared with the writes queued beside
// it and returns once that transaction is committed (and fsynced unless
// NoSync). The writer starts a commit as soon as the previous one ends, so
// a lone write waits for one fsync and a crowd shares each one; bbolt's
// own Batch would hold every write for a fixed delay instead.
func (s *Store) update(fn func(*bbolt.Tx) error) error {
	return <-s.enqueue(fn)
}

// enqueue queues fn for the writer and returns where its outcome will
// arrive; writes are committed in the order they were queued.
func (s *Store) enqueue(fn func(*bbolt.Tx) error) <-chan error {
	w := write{fn: fn, done: make(chan error, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.done <- errClosed
		return w.done
	}
	s.queue = append(s.queue, w)
	select {
	case s.wake <- struct{}{}:
	default: // the writer is already due to look at the queue
	}
	s.mu.Unlock()
	return w.done
}

// writer commits queued writes until Close, then drains what is left.
func (s *Store) writer() {
	defer close(s.stopped)
	for range s.wake {
		s.drain()
	}
	s.drain()
}

// drain commits the queue in batches until it is empty.
func (s *Store) drain() {
	for {
		s.mu.Lock()
		batch := s.queue
		if len(batch) > maxBatch {
			batch = batch[:maxBatch]
		}
		s.queue = s.queue[len(batch):]
		if len(s.queue) == 0 {
			s.queue = nil
		}
		s.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		s.commit(batch)
	}
}

// commit runs batch in one transaction. A write whose fn fails gets its
// error and the others are committed without it, as with bbolt's Batch.
func (s *Store) commit(batch []write) {
	for len(batch) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, w := range batch {
				if err := w.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range batch {
				w.done <- err
			}
			return
		}
		batch[failed].done <- err
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}
