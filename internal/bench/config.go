// Package bench measures tasker-go against a real PostgreSQL: the raw PGMQ floor, worker-only
// step throughput, end-to-end task latency and throughput (orchestrator and worker in one
// process and as separate processes), memory, allocations, and the SQL each step costs. It backs
// cmd/tasker-bench; every measurement runs in a fresh database created on the server.
package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Phases a run can include (Config.Only).
const (
	PhaseFloor    = "floor"    // raw PGMQ send → read → delete round trips
	PhaseWorker   = "worker"   // worker-only steps/s on pre-enqueued single-step tasks
	PhaseRiver    = "river"    // the River peer (bench/peers/river): no-op jobs/s and chain hop
	PhaseInProc   = "inproc"   // end to end, orchestrator + worker in this process
	PhaseSeparate = "separate" // end to end, `tasker worker` and `tasker orchestrator` child processes
	PhaseSweep    = "sweep"    // readiness, recovery and staleness sweeps on backlogs of 1k, 10k (and 100k) active tasks
)

// AllPhases lists every phase in the order a run performs them.
var AllPhases = []string{PhaseFloor, PhaseWorker, PhaseRiver, PhaseInProc, PhaseSeparate, PhaseSweep}

// Workflow keys (Config.Workflows).
const (
	WorkflowLinear  = "linear"  // rust_e2e_linear/mathematical_sequence: 4 sequential steps
	WorkflowDiamond = "diamond" // rust_e2e_diamond/diamond_pattern: 4 steps, 2 in parallel
	WorkflowBatch   = "batch"   // csv_processing_rust/csv_product_inventory_analyzer on 1,000 CSV rows: 7 steps
)

// Durability settings of the server the bench starts (Config.Durability).
const (
	DurabilityOn   = "on"   // fsync, synchronous_commit, full_page_writes on: what users run
	DurabilityOff  = "off"  // all three off, as the tests run
	DurabilityBoth = "both" // durable first, then the same measurements with durability off
)

// AllWorkflows lists every end-to-end workflow.
var AllWorkflows = []string{WorkflowLinear, WorkflowDiamond, WorkflowBatch}

// Config selects what tasker-bench measures and how much.
type Config struct {
	// DatabaseURL is an existing server (any database on it; measurements create their own).
	// Empty: start pgcontainer.Image() in Docker.
	DatabaseURL string `json:"-"`
	// Runs is how many times every measurement is repeated; figures are medians (default 3).
	Runs int `json:"runs"`
	// Quick selects the reduced sizes of QuickConfig (set by the --quick flag).
	Quick bool `json:"quick"`
	// Concurrency is the worker's handler concurrency (TASKER_CONCURRENCY); the worker's pool
	// has Concurrency+4 connections as in `tasker worker`, and the floor uses Concurrency
	// goroutines on a pool of that many connections.
	Concurrency int `json:"concurrency"`
	// FloorDuration is how long the PGMQ floor is measured (after a 1s warm-up), the naive and
	// the batched one each.
	FloorDuration time.Duration `json:"floor_duration_ns"`
	// FloorBatch is the batched floor's batch: pgmq.send_batch and pgmq.read of this many
	// messages, one pgmq.delete of their ids.
	FloorBatch int `json:"floor_batch"`
	// FloorBatchGoroutines is how many goroutines run the batched floor (one connection each).
	FloorBatchGoroutines int `json:"floor_batch_goroutines"`
	// Durability selects the settings of the server the bench starts: DurabilityOn,
	// DurabilityOff or DurabilityBoth. A DATABASE_URL server is measured as it is.
	Durability string `json:"durability"`
	// RiverJobs is how many no-op jobs the River peer pre-inserts for its throughput figure.
	RiverJobs int `json:"river_jobs"`
	// RiverHops is how many measured hops the River peer's chain has.
	RiverHops int `json:"river_hops"`
	// RiverWorkers is MaxWorkers of the River peer's queue.
	RiverWorkers int `json:"river_workers"`
	// RiverBin is a prebuilt River peer; empty builds bench/peers/river.
	RiverBin string `json:"-"`
	// WorkerTasks is N, the single-step tasks pre-enqueued for the worker-only measurement.
	WorkerTasks int `json:"worker_tasks"`
	// SerialTasks is how many tasks of each workflow are run one at a time for latency.
	SerialTasks int `json:"serial_tasks"`
	// BurstTasks is how many linear and diamond tasks are submitted at once for throughput.
	BurstTasks int `json:"burst_tasks"`
	// BatchBurstTasks is how many batch tasks are submitted at once for throughput.
	BatchBurstTasks int `json:"batch_burst_tasks"`
	// Submitters is how many goroutines call CreateTask concurrently in the burst.
	Submitters int `json:"submitters"`
	// Only selects the phases (default AllPhases).
	Only []string `json:"phases"`
	// Workflows restricts the end-to-end workflows (default AllWorkflows).
	Workflows []string `json:"workflows"`
	// Output is the JSON results path.
	Output string `json:"-"`
	// CPUProfile and MemProfile are profile path templates (see profiler).
	CPUProfile string `json:"-"`
	MemProfile string `json:"-"`
	// SQLStats records per-statement figures (client-side per pool, and pg_stat_statements when
	// the server preloads it) for the first run of each phase.
	SQLStats bool `json:"sql_stats"`
	// Memory runs the memory soak instead of the measurements.
	Memory bool `json:"memory"`
	// MemoryTasks is how many single-step tasks the soak runs through the worker.
	MemoryTasks int `json:"memory_tasks"`
	// MemoryInterval is the soak's sampling period.
	MemoryInterval time.Duration `json:"memory_interval_ns"`
	// TaskerBin is a prebuilt cmd/tasker binary for the separate-process phase; empty builds it.
	TaskerBin string `json:"-"`
	// SourceDir is the module root (for building cmd/tasker and finding examples/).
	SourceDir string `json:"-"`
	// KeepDatabases leaves the measurement databases on the server.
	KeepDatabases bool `json:"keep_databases"`
	// LogLevel is the worker and orchestrator log level (default warn; info logs every step).
	LogLevel string `json:"log_level"`
	// Timeout bounds one measurement.
	Timeout time.Duration `json:"timeout_ns"`
	// Out receives the progress lines and the table.
	Out io.Writer `json:"-"`
}

// DefaultConfig is the full run (`make bench`).
func DefaultConfig() Config {
	return Config{
		Runs:                 3,
		Concurrency:          10,
		FloorDuration:        5 * time.Second,
		FloorBatch:           100,
		FloorBatchGoroutines: 4,
		Durability:           DurabilityOn,
		RiverJobs:            20_000,
		RiverHops:            200,
		RiverWorkers:         16,
		WorkerTasks:          5000,
		SerialTasks:          20,
		BurstTasks:           200,
		BatchBurstTasks:      30,
		Submitters:           4,
		Only:                 AllPhases,
		Workflows:            AllWorkflows,
		MemoryTasks:          100_000,
		MemoryInterval:       2 * time.Second,
		LogLevel:             "warn",
		Timeout:              5 * time.Minute,
	}
}

// QuickConfig is the reduced run for CI (`make bench-quick`, under two minutes).
func QuickConfig() Config {
	c := DefaultConfig()
	c.Quick = true
	c.Runs = 1
	c.FloorDuration = 2 * time.Second
	c.WorkerTasks = 1000
	c.SerialTasks = 5
	c.BurstTasks = 30
	c.BatchBurstTasks = 5
	c.RiverJobs = 2000
	c.RiverHops = 50
	return c
}

// Validate reports every invalid setting at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("bench: "+format, args...)) }
	if c.Runs < 1 {
		bad("runs must be at least 1")
	}
	if c.Concurrency < 1 || c.Concurrency > 1000 {
		bad("concurrency %d is outside 1..1000", c.Concurrency)
	}
	if c.FloorDuration < 100*time.Millisecond {
		bad("floor duration must be at least 100ms")
	}
	if c.FloorBatch < 1 || c.FloorBatchGoroutines < 1 {
		bad("floor batch and its goroutines must be at least 1")
	}
	if c.RiverJobs < 1 || c.RiverHops < 1 || c.RiverWorkers < 1 {
		bad("river jobs, hops and workers must be at least 1")
	}
	if !slices.Contains([]string{DurabilityOn, DurabilityOff, DurabilityBoth}, c.Durability) {
		bad("durability %q is not on, off or both", c.Durability)
	}
	if c.WorkerTasks < 1 || c.SerialTasks < 1 || c.BurstTasks < 1 || c.BatchBurstTasks < 1 || c.Submitters < 1 {
		bad("task counts and submitters must be at least 1")
	}
	for _, p := range c.Only {
		if !slices.Contains(AllPhases, p) {
			bad("unknown phase %q (want %v)", p, AllPhases)
		}
	}
	for _, w := range c.Workflows {
		if !slices.Contains(AllWorkflows, w) {
			bad("unknown workflow %q (want %v)", w, AllWorkflows)
		}
	}
	if c.Memory && c.MemoryTasks < 1 {
		bad("memory tasks must be at least 1")
	}
	if c.Memory && c.MemoryInterval < 100*time.Millisecond {
		bad("memory interval must be at least 100ms")
	}
	if c.Output == "" {
		bad("an output path is required")
	}
	return errors.Join(errs...)
}

func (c Config) has(phase string) bool { return slices.Contains(c.Only, phase) }
