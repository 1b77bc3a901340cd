package worker

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
)

// Metrics are the worker's counters, read by the HTTP endpoints and tests. All methods are safe
// for concurrent use.
type Metrics struct {
	messagesRead        atomic.Int64
	claimed             atomic.Int64
	completed           atomic.Int64
	failed              atomic.Int64
	malformed           atomic.Int64
	duplicates          atomic.Int64
	archived            atomic.Int64
	recovered           atomic.Int64
	inProgressElsewhere atomic.Int64
	lateRejected        atomic.Int64
	interrupted         atomic.Int64
	checkpoints         atomic.Int64
	dbErrors            atomic.Int64
	notifyWakeups       atomic.Int64
	pollWakeups         atomic.Int64
	hintsClaimed        atomic.Int64
	hintsMissed         atomic.Int64
	completionGroups    atomic.Int64
	groupedCompletions  atomic.Int64
	groupsSplit         atomic.Int64
	inFlight            atomic.Int64
	stuckHandlers       atomic.Int64

	reads *queue.ReadTimes // last successful read of each worker queue

	mu       sync.Mutex
	byStep   map[stepKey]*StepStats
	started  time.Time
	capacity int
}

type stepKey struct{ Namespace, Handler string }

// StepStats counts results and handler durations for one namespace and handler.
type StepStats struct {
	Namespace, Handler string
	Completed, Failed  int64
	// Buckets[i] counts durations <= DurationBuckets[i]; Count and SumSeconds cover all.
	Buckets    []int64
	Count      int64
	SumSeconds float64
}

// DurationBuckets are the handler duration histogram bounds, in seconds.
var DurationBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func (m *Metrics) init(namespaces []string) {
	qs := make([]string, len(namespaces))
	for i, ns := range namespaces {
		qs[i] = queue.WorkerQueue(ns)
	}
	m.reads = queue.NewReadTimes(qs...)
	m.byStep = map[stepKey]*StepStats{}
	m.started = time.Now()
}

func (w *Worker) observeHandler(c *claim, res protocol.StepExecutionResult) {
	m := &w.metrics
	k := stepKey{c.seq.Task.NamespaceName, c.seq.StepDefinition.Handler.Callable}
	secs := float64(res.Metadata.ExecutionTimeMs) / 1000
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.byStep[k]
	if s == nil {
		s = &StepStats{Namespace: k.Namespace, Handler: k.Handler, Buckets: make([]int64, len(DurationBuckets))}
		m.byStep[k] = s
	}
	if res.Success {
		s.Completed++
	} else {
		s.Failed++
	}
	for i, b := range DurationBuckets {
		if secs <= b {
			s.Buckets[i]++
		}
	}
	s.Count++
	s.SumSeconds += secs
}

// Snapshot is a point-in-time copy of the counters.
type Snapshot struct {
	MessagesRead, Claimed, Completed, Failed, Malformed, Duplicates, Archived, Recovered,
	InProgressElsewhere, LateRejected, Interrupted, Checkpoints, DBErrors, NotifyWakeups,
	PollWakeups, HintsClaimed, HintsMissed, InFlight, StuckHandlers int64
	// CompletionGroups counts grouped completion statements written; GroupedCompletions the
	// completions they carried; GroupsSplit the group statements that failed, whose
	// completions were then written one at a time.
	CompletionGroups, GroupedCompletions, GroupsSplit int64
	Uptime                                            time.Duration
	Steps                                             []StepStats
}

// Snapshot copies the counters.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{
		MessagesRead: m.messagesRead.Load(), Claimed: m.claimed.Load(), Completed: m.completed.Load(),
		Failed: m.failed.Load(), Malformed: m.malformed.Load(), Duplicates: m.duplicates.Load(),
		Archived: m.archived.Load(), Recovered: m.recovered.Load(), InProgressElsewhere: m.inProgressElsewhere.Load(),
		LateRejected: m.lateRejected.Load(), Interrupted: m.interrupted.Load(), Checkpoints: m.checkpoints.Load(),
		DBErrors: m.dbErrors.Load(), NotifyWakeups: m.notifyWakeups.Load(), PollWakeups: m.pollWakeups.Load(),
		HintsClaimed: m.hintsClaimed.Load(), HintsMissed: m.hintsMissed.Load(),
		InFlight: m.inFlight.Load(), StuckHandlers: m.stuckHandlers.Load(),
		CompletionGroups: m.completionGroups.Load(), GroupedCompletions: m.groupedCompletions.Load(),
		GroupsSplit: m.groupsSplit.Load(),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.Uptime = time.Since(m.started)
	for _, v := range m.byStep {
		c := *v
		c.Buckets = append([]int64(nil), v.Buckets...)
		s.Steps = append(s.Steps, c)
	}
	sort.Slice(s.Steps, func(i, j int) bool {
		if s.Steps[i].Namespace != s.Steps[j].Namespace {
			return s.Steps[i].Namespace < s.Steps[j].Namespace
		}
		return s.Steps[i].Handler < s.Steps[j].Handler
	})
	return s
}

// ReadAges says how long ago each worker queue was last read successfully. While handler slots
// are free the fetch loop reads at least every poll interval, so a growing age means reads fail
// or hang.
func (m *Metrics) ReadAges(now time.Time) []queue.ReadAge { return m.reads.Ages(now) }

// InFlight is the number of handler slots in use: messages being claimed or run (a completion
// waiting for its write has given its slot back).
func (m *Metrics) InFlight() int64 { return m.inFlight.Load() }
