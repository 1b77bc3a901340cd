package queue

import (
	"sort"
	"sync/atomic"
	"time"
)

// ReadTimes remembers when each of a fixed set of queues was last read successfully and how
// many reads failed since, so that a consumer stuck on a dead connection shows as a growing age
// (a gauge and a readiness check) and its recovery as one log line, instead of as silence. Safe
// for concurrent use.
type ReadTimes struct {
	queues map[string]*readTime
}

type readTime struct {
	last      atomic.Int64 // unix nanoseconds of the last successful read
	failures  atomic.Int64 // failed reads since then
	failingAt atomic.Int64 // unix nanoseconds of the first of them
}

// NewReadTimes tracks queues; each counts as read at creation.
func NewReadTimes(queues ...string) *ReadTimes {
	r := &ReadTimes{queues: make(map[string]*readTime, len(queues))}
	now := time.Now().UnixNano()
	for _, q := range queues {
		rt := new(readTime)
		rt.last.Store(now)
		r.queues[q] = rt
	}
	return r
}

// Outage is a run of failed reads that a successful one ended.
type Outage struct {
	Failures int64         // failed reads
	For      time.Duration // from the first failure to the success
}

// Mark records a successful read of q now and returns the outage it ended (zero Failures when
// the previous read succeeded too). Untracked queues are ignored.
func (r *ReadTimes) Mark(q string) Outage {
	rt := r.get(q)
	if rt == nil {
		return Outage{}
	}
	now := time.Now()
	rt.last.Store(now.UnixNano())
	n := rt.failures.Swap(0)
	if n == 0 {
		return Outage{}
	}
	return Outage{Failures: n, For: now.Sub(time.Unix(0, rt.failingAt.Load()))}
}

// Failed records a failed read of q.
func (r *ReadTimes) Failed(q string) {
	if rt := r.get(q); rt != nil && rt.failures.Add(1) == 1 {
		rt.failingAt.Store(time.Now().UnixNano())
	}
}

func (r *ReadTimes) get(q string) *readTime {
	if r == nil {
		return nil
	}
	return r.queues[q]
}

// ReadAge is how long ago one queue was last read successfully.
type ReadAge struct {
	Queue string
	Age   time.Duration
}

// Ages lists every tracked queue's age at now, by queue name.
func (r *ReadTimes) Ages(now time.Time) []ReadAge {
	if r == nil {
		return nil
	}
	out := make([]ReadAge, 0, len(r.queues))
	for q, rt := range r.queues {
		out = append(out, ReadAge{Queue: q, Age: now.Sub(time.Unix(0, rt.last.Load()))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Queue < out[j].Queue })
	return out
}
