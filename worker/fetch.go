package worker

import (
	"context"
	"sync"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/tasker-go/tasker/queue"
)

// maxReadBackoff caps the wait between failing reads, so a worker reads again within seconds
// of the database answering after an outage or a partition.
const maxReadBackoff = 4 * time.Second

// hintCapacity bounds the notified messages a namespace keeps for its next wake-up; beyond it
// the worker reads the queue instead.
const hintCapacity = 64

// fetchLoop reads only as many messages as there are free handler slots (no prefetch beyond
// capacity), claims the steps of the messages read together in one statement (claimGroup),
// hands each to the pool, and reads again at once after a full batch; otherwise it
// waits for a notification or the poll interval. A notification that carries its message (all
// of tasker's small ones do) is acted on without a read: the claim itself takes the step and
// the message (processHint); the queue is read when a notification had no message, hints
// overflowed or found no free slot, and at every poll interval.
func (w *Worker) fetchLoop(ctx, workCtx context.Context, ns string, wk *queue.Waker, p *pool.Pool) {
	q := queue.WorkerQueue(ns)
	vt := int(w.cfg.VisibilityTimeout / time.Second)
	log := w.log.With("namespace", ns, "queue", q)
	backoff := w.cfg.PollInterval
	backlog := false // the last read filled its batch: more messages are waiting
	read := true
	hinted := newIDRing(4 * hintCapacity) // messages claimed from notifications
	for ctx.Err() == nil {
		if read {
			want := 1
			if backlog {
				// With messages waiting, gather a few free slots before reading: one read per
				// several messages costs PostgreSQL less than one per message (a read is
				// planned anew each time), and short handlers finish within the wait.
				want = max(1, min(w.cfg.BatchSize, w.cfg.Concurrency/2))
			}
			n := w.acquire(ctx, want, w.cfg.BatchSize, batchGather)
			if n == 0 {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, w.cfg.DBTimeout)
			msgs, err := w.queue.Read(rctx, q, vt, n)
			cancel()
			if err != nil {
				w.release(n)
				if ctx.Err() != nil {
					return
				}
				w.metrics.dbErrors.Add(1)
				w.metrics.reads.Failed(q)
				log.Error("read failed; retrying", "error", err, "in", backoff)
				sleep(ctx, backoff)
				backoff = min(backoff*2, maxReadBackoff)
				continue
			}
			backoff = w.cfg.PollInterval
			if o := w.metrics.reads.Mark(q); o.Failures > 0 {
				log.Info("queue reads resumed", "failed_reads", o.Failures, "after", o.For.Round(time.Millisecond))
			}
			w.release(n - len(msgs))
			w.metrics.messagesRead.Add(int64(len(msgs)))
			fresh := msgs[:0]
			for _, m := range msgs {
				if hinted.has(m.ID) {
					w.release(1) // read while its notification's claim ran: already ours
					continue
				}
				fresh = append(fresh, m)
			}
			if len(fresh) == 1 {
				w.dispatch(p, func(s *slot) { w.process(workCtx, ns, q, fresh[0], s) })
			} else if len(fresh) > 1 {
				w.claimGroup(workCtx, ns, q, fresh, p)
			}
			if backlog = len(msgs) == n; backlog {
				continue // a full batch: there may be more
			}
		}
		woke, err := wk.Wait(ctx, w.cfg.PollInterval)
		if err != nil {
			return
		}
		if !woke {
			w.metrics.pollWakeups.Add(1)
			read = true
			continue
		}
		w.metrics.notifyWakeups.Add(1)
		hints, missed := wk.TakeHints()
		if missed {
			read = true // more than notifications told: reads take them in batches
			continue
		}
		// No hints and nothing missed: a wake-up whose hints an earlier round already took.
		read = false
		for _, h := range hints {
			if !w.tryAcquire() {
				read = true // no free slot: the rest wait for a read
				break
			}
			w.dispatch(p, func(s *slot) {
				if w.processHint(workCtx, ns, q, h, s) {
					hinted.add(h.MsgID)
				}
			})
		}
	}
}

// idRing remembers the last n message ids added.
type idRing struct {
	mu   sync.Mutex
	ids  []int64
	next int
	set  map[int64]struct{}
}

func newIDRing(n int) *idRing {
	return &idRing{ids: make([]int64, 0, n), set: make(map[int64]struct{}, n)}
}

func (r *idRing) add(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) < cap(r.ids) {
		r.ids = append(r.ids, id)
	} else {
		delete(r.set, r.ids[r.next])
		r.ids[r.next] = id
		r.next = (r.next + 1) % len(r.ids)
	}
	r.set[id] = struct{}{}
}

func (r *idRing) has(id int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[id]
	return ok
}

// dispatch runs fn on the handler pool in a slot the caller acquired; the slot is given back
// when fn returns, or earlier if fn frees it.
func (w *Worker) dispatch(p *pool.Pool, fn func(s *slot)) {
	w.metrics.inFlight.Add(1)
	s := &slot{w: w}
	p.Go(func() {
		defer s.free()
		fn(s)
	})
}

// slot is a handler slot held by a dispatched function.
type slot struct {
	w    *Worker
	once sync.Once
}

// free gives the slot back (once; nil-safe). A handler whose completion only waits for its
// write frees its slot so another message can start meanwhile.
func (s *slot) free() {
	if s != nil {
		s.once.Do(func() {
			s.w.metrics.inFlight.Add(-1)
			s.w.release(1)
		})
	}
}

// tryAcquire takes one free handler slot if there is one.
func (w *Worker) tryAcquire() bool {
	select {
	case w.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// batchGather bounds how long acquire waits for more free slots once it holds one.
const batchGather = 2 * time.Millisecond

// acquire blocks until at least one handler slot is free and takes up to most of them; when it
// holds fewer than least, it waits up to gather for more.
func (w *Worker) acquire(ctx context.Context, least, most int, gather time.Duration) int {
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	var deadline <-chan time.Time
	for n < most {
		if w.tryAcquire() {
			n++
			continue
		}
		if n >= least {
			return n
		}
		if deadline == nil {
			t := time.NewTimer(gather)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case w.slots <- struct{}{}:
			n++
		case <-deadline:
			return n
		case <-ctx.Done():
			return n
		}
	}
	return n
}

func (w *Worker) release(n int) {
	for range n {
		<-w.slots
	}
}
