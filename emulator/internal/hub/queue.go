package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// queue is a durable first-in first-out queue of service-bound items
// (feedback records, file notifications): an item is stored before it is
// queued; items a receiver takes are held until it settles them, and
// deleted when it accepts them or put back at the head otherwise, so a
// crash or a receiver that goes away loses nothing. Beyond max items the
// oldest are dropped.
type queue[T any] struct {
	name  string
	store ServiceStore
	max   int

	mu    sync.Mutex
	items []queued[T]   // guarded by mu; waiting, oldest first
	next  uint64        // guarded by mu; the next sequence number
	ready chan struct{} // guarded by mu; closed when items arrive
}

type queued[T any] struct {
	seq uint64
	v   T
}

// load reads the stored items.
func (q *queue[T]) load() error {
	return q.store.LoadQueued(q.name, func(seq uint64, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("%s %d: %w", q.name, seq, err)
		}
		q.items = append(q.items, queued[T]{seq, v})
		q.next = max(q.next, seq+1)
		return nil
	})
}

// push stores v and queues it.
func (q *queue[T]) push(v T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	q.mu.Lock()
	seq := q.next
	q.next++
	q.mu.Unlock()
	if err := q.store.PutQueued(q.name, seq, b); err != nil {
		return err
	}
	q.mu.Lock()
	q.items = append(q.items, queued[T]{seq, v})
	var dropped []uint64
	for len(q.items) > q.max {
		dropped = append(dropped, q.items[0].seq)
		q.items = q.items[1:]
	}
	q.wakeLocked()
	q.mu.Unlock()
	if len(dropped) > 0 {
		return q.store.DeleteQueued(q.name, dropped...)
	}
	return nil
}

func (q *queue[T]) wakeLocked() {
	if q.ready != nil {
		close(q.ready)
		q.ready = nil
	}
}

// take waits for items and takes up to n of them (all when n is zero),
// until ctx ends. settle must be called once with the receiver's verdict.
func (q *queue[T]) take(ctx context.Context, n int) (items []T, settle func(accepted bool), err error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			k := len(q.items)
			if n > 0 {
				k = min(k, n)
			}
			taken := append([]queued[T](nil), q.items[:k]...)
			q.items = q.items[k:]
			q.mu.Unlock()
			for _, it := range taken {
				items = append(items, it.v)
			}
			return items, q.settler(taken), nil
		}
		if q.ready == nil {
			q.ready = make(chan struct{})
		}
		ready := q.ready
		q.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

func (q *queue[T]) settler(taken []queued[T]) func(bool) {
	var once sync.Once
	return func(accepted bool) {
		once.Do(func() {
			if accepted {
				seqs := make([]uint64, len(taken))
				for i, it := range taken {
					seqs[i] = it.seq
				}
				_ = q.store.DeleteQueued(q.name, seqs...)
				return
			}
			q.mu.Lock()
			q.items = append(append([]queued[T](nil), taken...), q.items...)
			q.wakeLocked()
			q.mu.Unlock()
		})
	}
}
