package orchestration

import (
	"context"
	"sync"
	"time"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
)

// LatencyBuckets are the bounds, in seconds, of the result processing and sweep duration
// histograms.
var LatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Error kinds counted by Metrics.
const (
	ErrKindQueueRead        = "queue_read"        // reading orchestration_step_results failed
	ErrKindResultProcessing = "result_processing" // a result message failed (after immediate retries)
	ErrKindResultArchive    = "result_archive"    // archiving a failing result message failed
	ErrKindReadinessSweep   = "readiness_sweep"   // the readiness sweep's search failed
	ErrKindRecoverySweep    = "recovery_sweep"    // a recovery sweep search failed
	ErrKindTaskAdvance      = "task_advance"      // a sweep could not advance one task
	ErrKindStepRecovery     = "step_recovery"     // an abandoned step could not be recovered
	ErrKindOrphanResult     = "orphan_result"     // a result without a message could not be processed
)

// ErrorKinds lists every error kind, each exported (at 0) from the start.
var ErrorKinds = []string{ErrKindQueueRead, ErrKindResultProcessing, ErrKindResultArchive, ErrKindReadinessSweep,
	ErrKindRecoverySweep, ErrKindTaskAdvance, ErrKindStepRecovery, ErrKindOrphanResult}

// Sweep names and what they find.
const (
	SweepReadiness = "readiness"
	SweepRecovery  = "recovery"

	FoundTasksAdvanced = "tasks_advanced" // readiness: tasks whose ready steps were enqueued
	FoundAbandoned     = "abandoned_steps"
	FoundStuckTasks    = "stuck_tasks"
	FoundOrphanResults = "orphan_results"
)

// ResultOutcomes lists every ResultOutcome, each exported (at 0) from the start.
var ResultOutcomes = []ResultOutcome{OutcomeCompleted, OutcomeRetry, OutcomeFailed, OutcomeDuplicate,
	OutcomeMalformed, OutcomeUnknownStep, OutcomeTaken}

// Disposition groups a ResultOutcome: "applied" (the step moved to complete, waiting_for_retry
// or error), "duplicate" (the result had been applied already), "rejected" (malformed, or for an
// unknown task or step; archived with a reason) or "taken" (consumed by another orchestrator).
func (r ResultOutcome) Disposition() string {
	switch r {
	case OutcomeCompleted, OutcomeRetry, OutcomeFailed:
		return "applied"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeTaken:
		return "taken"
	default:
		return "rejected"
	}
}

// FinalStates are the states a task is counted as finalized in.
var FinalStates = []state.TaskState{state.TaskComplete, state.TaskError, state.TaskCancelled,
	state.TaskResolvedManually, state.TaskBlockedByFailures}

// Histogram is a point-in-time copy of a histogram over LatencyBuckets: Counts[i] counts the
// observations <= LatencyBuckets[i] (cumulative).
type Histogram struct {
	Counts []uint64
	Count  uint64
	Sum    float64
}

func (h *Histogram) observe(secs float64) {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(LatencyBuckets))
	}
	for i, b := range LatencyBuckets {
		if secs <= b {
			h.Counts[i]++
		}
	}
	h.Count++
	h.Sum += secs
}

func (h Histogram) clone() Histogram {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(LatencyBuckets))
	}
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// TaskKey names a template.
type TaskKey struct{ Namespace, Name string }

// SweepStats counts the runs of one sweep, what they found and how long they took.
type SweepStats struct {
	Runs     int64
	Found    map[string]int64 // by FoundTasksAdvanced, FoundAbandoned, ...
	Duration Histogram
}

// Metrics are the orchestrator's counters, kept from New on and read by the orchestrator's
// /metrics (see web.NewOrchestratorCollector). Everything is counted after its transaction
// committed, so work that was rolled back and retried counts once. The zero value is ready; all
// methods are safe for concurrent use.
type Metrics struct {
	mu            sync.Mutex
	created       map[TaskKey]int64
	finalized     map[state.TaskState]int64
	results       map[ResultOutcome]int64
	resultLatency Histogram
	enqueued      map[string]int64 // by namespace
	expansions    map[string]int64 // decision | batch
	sweeps        map[string]*SweepStats
	errors        map[string]int64
}

// MetricsSnapshot is a point-in-time copy of Metrics.
type MetricsSnapshot struct {
	TasksCreated   map[TaskKey]int64
	TasksFinalized map[state.TaskState]int64 // every FinalStates entry present
	Results        map[ResultOutcome]int64   // every ResultOutcomes entry present
	// ResultLatency is the time from a result message's read to the commit that applied it
	// (immediate retries included), for messages processed without error.
	ResultLatency Histogram
	StepsEnqueued map[string]int64      // by namespace
	Expansions    map[string]int64      // "decision" and "batch" present
	Sweeps        map[string]SweepStats // SweepReadiness and SweepRecovery present
	Errors        map[string]int64      // every ErrorKinds entry present
}

// Metrics returns the orchestrator's counters.
func (o *Orchestrator) Metrics() *Metrics { return &o.metrics }

// MetricsSnapshot copies the orchestrator's counters.
func (o *Orchestrator) MetricsSnapshot() MetricsSnapshot { return o.metrics.Snapshot() }

// Snapshot copies the counters.
func (m *Metrics) Snapshot() MetricsSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	s := MetricsSnapshot{
		TasksCreated:   cloneMap(m.created),
		TasksFinalized: cloneMap(m.finalized),
		Results:        cloneMap(m.results),
		ResultLatency:  m.resultLatency.clone(),
		StepsEnqueued:  cloneMap(m.enqueued),
		Expansions:     cloneMap(m.expansions),
		Sweeps:         make(map[string]SweepStats, len(m.sweeps)),
		Errors:         cloneMap(m.errors),
	}
	for name, st := range m.sweeps {
		s.Sweeps[name] = SweepStats{Runs: st.Runs, Found: cloneMap(st.Found), Duration: st.Duration.clone()}
	}
	return s
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// initLocked creates the maps with every fixed label present at 0.
func (m *Metrics) initLocked() {
	if m.created != nil {
		return
	}
	m.created = map[TaskKey]int64{}
	m.finalized = map[state.TaskState]int64{}
	for _, s := range FinalStates {
		m.finalized[s] = 0
	}
	m.results = map[ResultOutcome]int64{}
	for _, r := range ResultOutcomes {
		m.results[r] = 0
	}
	m.resultLatency.Counts = make([]uint64, len(LatencyBuckets))
	m.enqueued = map[string]int64{}
	m.expansions = map[string]int64{"decision": 0, "batch": 0}
	m.sweeps = map[string]*SweepStats{
		SweepReadiness: {Found: map[string]int64{FoundTasksAdvanced: 0}},
		SweepRecovery:  {Found: map[string]int64{FoundAbandoned: 0, FoundStuckTasks: 0, FoundOrphanResults: 0}},
	}
	m.errors = map[string]int64{}
	for _, k := range ErrorKinds {
		m.errors[k] = 0
	}
}

func (m *Metrics) update(fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	fn()
}

// countError counts one error of kind (an ErrKind* constant).
func (m *Metrics) countError(kind string) { m.update(func() { m.errors[kind]++ }) }

// countResult counts a processed result message: its outcome and latency when err is nil, a
// result_processing error otherwise.
func (m *Metrics) countResult(outcome ResultOutcome, err error, took time.Duration) {
	m.update(func() {
		if err != nil {
			m.errors[ErrKindResultProcessing]++
			return
		}
		m.results[outcome]++
		m.resultLatency.observe(took.Seconds())
	})
}

// countFinalized counts a task moved to a final state outside a taskRow (Cancel).
func (m *Metrics) countFinalized(s state.TaskState) { m.update(func() { m.finalized[s]++ }) }

// committed counts what a committed transaction did to task: the steps it dispatched, the
// decision and batch outcomes it applied and, when it moved the task into a final state, the
// finalization.
func (m *Metrics) committed(task *taskRow) {
	if task == nil {
		return
	}
	m.update(func() {
		if n := len(task.dispatched); n > 0 {
			m.enqueued[task.Namespace] += int64(n)
		}
		for kind, n := range task.expanded {
			m.expansions[kind] += int64(n)
		}
		if to := task.Head.State; task.hooked && to != task.hopsFrom.State && (to.IsTerminal() || to == state.TaskBlockedByFailures) {
			m.finalized[to]++
		}
	})
}

// taskCreated counts a task CreateTask committed, and what its first dispatch did.
func (m *Metrics) taskCreated(task *taskRow) {
	m.update(func() { m.created[TaskKey{task.Namespace, task.Name}]++ })
	m.committed(task)
}

// expandedKind is the expansions label of a decision or batchable step type.
func expandedKind(t template.StepType) string {
	if t == template.StepDecision {
		return "decision"
	}
	return "batch"
}

// noteExpansion records on task (counted at commit) an applied decision or batch outcome.
func (task *taskRow) noteExpansion(t template.StepType) {
	if task.expanded == nil {
		task.expanded = map[string]int{}
	}
	task.expanded[expandedKind(t)]++
}

// committedErr counts task when err (a commit's) is nil, and returns err.
func (o *Orchestrator) committedErr(err error, task *taskRow) error {
	if err == nil {
		o.metrics.committed(task)
	}
	return err
}

// countSweep records one run of sweep: its duration, what it found, and an error.
func (m *Metrics) countSweep(sweep string, took time.Duration, found map[string]int, err error, errKind string) {
	m.update(func() {
		st := m.sweeps[sweep]
		st.Runs++
		st.Duration.observe(took.Seconds())
		for k, n := range found {
			st.Found[k] += int64(n)
		}
		if err != nil {
			m.errors[errKind]++
		}
	})
}

// runReadinessSweep is ReadinessSweep, measured.
func (o *Orchestrator) runReadinessSweep(ctx context.Context) (int, error) {
	start := time.Now()
	n, err := o.ReadinessSweep(ctx)
	if ctx.Err() == nil {
		o.metrics.countSweep(SweepReadiness, time.Since(start), map[string]int{FoundTasksAdvanced: n}, err, ErrKindReadinessSweep)
	}
	return n, err
}

// runRecoverySweep is RecoverySweep, measured.
func (o *Orchestrator) runRecoverySweep(ctx context.Context) (RecoveryReport, error) {
	start := time.Now()
	rep, err := o.RecoverySweep(ctx)
	if ctx.Err() == nil {
		o.metrics.countSweep(SweepRecovery, time.Since(start), map[string]int{
			FoundAbandoned: rep.AbandonedSteps, FoundStuckTasks: rep.StuckTasks, FoundOrphanResults: rep.OrphanResults,
		}, err, ErrKindRecoverySweep)
	}
	return rep, err
}
