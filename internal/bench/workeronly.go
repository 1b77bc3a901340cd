package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/worker"
)

// workerResult is one worker-only measurement.
type workerResult struct {
	Steps         int64
	Feed          time.Duration // writing the N tasks and messages
	DBSpan        time.Duration // first claim → last completion, by transition timestamps
	Wall          time.Duration // worker start → last completion counted by the worker
	StepsPerSec   float64       // Steps / DBSpan
	WallPerSec    float64       // Steps / Wall
	AllocsPerStep float64
	BytesPerStep  float64
	CPUPerStep    time.Duration // this process's CPU time per step (the worker's share)
	MachineBusy   float64       // percent of all CPUs busy during the run (worker + PostgreSQL)
	CPU           cpuUse        // database and worker CPU, worker start → last step
	PeakRSSKB     int64
	SQL           sqlTotals
	Profile       *SQLProfile
}

// noopWorker is a running worker on the no-op template.
type noopWorker struct {
	w    *worker.Worker
	stop context.CancelFunc
	done chan error
}

func startNoopWorker(ctx context.Context, url string, pool *pgxpool.Pool, concurrency int, log *slog.Logger) (*noopWorker, error) {
	reg, err := noopRegistry()
	if err != nil {
		return nil, err
	}
	wcfg := worker.DefaultConfig()
	wcfg.Namespaces = []string{noopNamespace}
	wcfg.Concurrency = concurrency
	w, err := worker.New(wcfg, pool, reg, worker.WithLogger(log))
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	nw := &noopWorker{w: w, stop: stop, done: make(chan error, 1)}
	go func() { nw.done <- w.Run(runCtx) }()
	return nw, nil
}

func (nw *noopWorker) shutdown() error {
	nw.stop()
	return <-nw.done
}

// waitFinished waits until the worker has completed or failed n steps since base. Failures are
// an error: the no-op handler cannot fail.
func (nw *noopWorker) waitFinished(ctx context.Context, base worker.Snapshot, n int64) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s := nw.w.Metrics().Snapshot()
		if s.Failed > base.Failed || s.DBErrors > base.DBErrors {
			return fmt.Errorf("bench: worker reported %d failed steps and %d database errors", s.Failed-base.Failed, s.DBErrors-base.DBErrors)
		}
		if s.Completed-base.Completed >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: worker completed %d of %d steps: %w", s.Completed-base.Completed, n, ctx.Err())
		case err := <-nw.done:
			nw.done <- err
			return fmt.Errorf("bench: worker stopped early: %v", err)
		case <-t.C:
		}
	}
}

// runWorkerOnly feeds N single-step tasks, then starts only the worker (no orchestrator) and
// measures how fast it claims, runs and completes them.
func runWorkerOnly(ctx context.Context, d *database, cfg Config, prof *profiler, detail bool, log *slog.Logger) (workerResult, error) {
	var res workerResult
	admin, err := d.pool(ctx, 4, nil)
	if err != nil {
		return res, err
	}
	defer admin.Close()
	rows, err := registerNoop(ctx, admin)
	if err != nil {
		return res, err
	}
	feedStart := time.Now()
	if err := feedNoopTasks(ctx, admin, rows, cfg.WorkerTasks, 5000); err != nil {
		return res, err
	}
	res.Feed = time.Since(feedStart)
	// Fresh statistics for the planner after the bulk insert, as autovacuum would soon do.
	if _, err := admin.Exec(ctx, "ANALYZE"); err != nil {
		return res, err
	}

	counter := newSQLCounter(detail)
	pool, err := d.pool(ctx, cfg.Concurrency+4, counter)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	var ps *pgStat
	var before map[int64]pgStatEntry
	if detail {
		ps = newPGStat(ctx, admin)
		if ps.ok {
			before, _ = ps.snapshot(ctx)
		}
	}

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, mach0 := selfCPU(), readMachineCPU()
	resetPeakRSS()
	stopProf, err := prof.start(PhaseWorker)
	if err != nil {
		return res, err
	}
	start := time.Now()
	win := startCPUWindow(d.srv.cpu, selfCPU)
	nw, err := startNoopWorker(ctx, d.url, pool, cfg.Concurrency, log)
	if err != nil {
		_ = stopProf()
		return res, err
	}
	waitErr := nw.waitFinished(ctx, worker.Snapshot{}, int64(cfg.WorkerTasks))
	res.CPU = win.stop()
	res.Wall = time.Since(start)
	runtime.ReadMemStats(&m1)
	cpu1, mach1 := selfCPU(), readMachineCPU()
	res.PeakRSSKB = procStatusKB(0, "VmHWM")
	res.SQL = counter.totals()
	profErr := stopProf()
	if err := nw.shutdown(); err != nil && waitErr == nil {
		waitErr = err
	}
	if waitErr != nil {
		return res, waitErr
	}
	if profErr != nil {
		return res, profErr
	}
	var after map[int64]pgStatEntry
	if ps != nil && ps.ok {
		after, _ = ps.snapshot(ctx)
	}

	// Completions as committed: steps whose current state is enqueued_for_orchestration.
	var first, last time.Time
	if err := admin.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE most_recent AND to_state = 'enqueued_for_orchestration'),
		       min(created_at) FILTER (WHERE to_state = 'in_progress'),
		       max(created_at) FILTER (WHERE to_state = 'enqueued_for_orchestration')
		  FROM tasker.workflow_step_transitions`).Scan(&res.Steps, &first, &last); err != nil {
		return res, fmt.Errorf("bench: count completions: %w", err)
	}
	if res.Steps != int64(cfg.WorkerTasks) {
		return res, fmt.Errorf("bench: %d steps completed in the database, want %d", res.Steps, cfg.WorkerTasks)
	}
	res.DBSpan = last.Sub(first)
	if res.DBSpan <= 0 {
		return res, errors.New("bench: completions span no time")
	}
	n := float64(res.Steps)
	res.StepsPerSec = n / res.DBSpan.Seconds()
	res.WallPerSec = n / res.Wall.Seconds()
	res.AllocsPerStep = float64(m1.Mallocs-m0.Mallocs) / n
	res.BytesPerStep = float64(m1.TotalAlloc-m0.TotalAlloc) / n
	res.CPUPerStep = (cpu1 - cpu0) / time.Duration(res.Steps)
	res.MachineBusy = busyPercent(mach0, mach1)

	if detail {
		p := &SQLProfile{Phase: "worker-only", Steps: res.Steps, Tasks: res.Steps,
			Components: map[string]ComponentSQL{"worker": componentSQL(res.SQL, res.Steps)},
			ByPool:     map[string][]ClientStatement{"worker": diffStatements(nil, counter.snapshot(), res.Steps)}}
		if ps.ok {
			p.Server = diffServer(before, after, res.Steps)
		} else {
			p.ServerNote = fmt.Sprintf("pg_stat_statements unavailable: %v", ps.err)
		}
		res.Profile = p
	}
	return res, nil
}
