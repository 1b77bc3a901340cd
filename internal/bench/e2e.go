package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	exhandlers "github.com/tasker-go/tasker/examples/handlers"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/worker"
)

// e2eResult is one end-to-end measurement of one workflow.
type e2eResult struct {
	Serial        latencyStats // one task at a time
	Burst         latencyStats // BurstTasks submitted at once
	PeakRSSKB     int64        // in process: this process; separate: the worker child
	OrchRSSKB     int64        // separate: the orchestrator child
	CPUPerStep    time.Duration
	WorkerCPU     time.Duration // separate: worker child CPU per step
	OrchCPU       time.Duration // separate: orchestrator child CPU per step
	MachineBusy   float64
	BurstCPU      cpuUse // database and Go CPU over the burst (submission → all complete)
	AllocsPerStep float64
	SQL           map[string]sqlTotals
	Profile       *SQLProfile
}

// e2eEnv is what a measurement submits tasks through (client: CreateTask) and watches them with
// (query: a separate pool, so polling is not counted as the client's statements), and how the
// burst's CPU is read: dbCPU for the server, goCPU for the Go processes doing the work.
type e2eEnv struct {
	client *orchestration.Orchestrator
	query  *pgxpool.Pool
	dbCPU  *dbCPUMeter
	goCPU  func() time.Duration
}

// warmUp runs one task so connections, prepared statements and template caches are warm and
// both orchestrator and worker are known to run.
func warmUp(ctx context.Context, env e2eEnv, wl workload) error {
	for range 1 {
		id, err := submitWhenRegistered(ctx, env.client, wl, 60*time.Second)
		if err != nil {
			return fmt.Errorf("bench: warm-up submit %s: %w", wl.key, err)
		}
		if err := waitTask(ctx, env.query, id); err != nil {
			return fmt.Errorf("bench: warm-up: %w", err)
		}
	}
	return nil
}

// measure runs the serial and burst parts of one workflow; cpu is read over the burst, from the
// first submission until every task is complete (the bench's 50 ms completion poll included).
func measure(ctx context.Context, env e2eEnv, wl workload, cfg Config) (serial, burst latencyStats, cpu cpuUse, err error) {
	ids, err := runSerial(ctx, env.client, env.query, wl, cfg.SerialTasks)
	if err != nil {
		return serial, burst, cpu, err
	}
	if serial, err = taskLatencies(ctx, env.query, ids); err != nil {
		return serial, burst, cpu, err
	}
	n := cfg.BurstTasks
	if wl.key == WorkflowBatch {
		n = cfg.BatchBurstTasks
	}
	win := startCPUWindow(env.dbCPU, env.goCPU)
	ids, err = runBurst(ctx, env.client, env.query, wl, n, cfg.Submitters)
	cpu = win.stop()
	if err != nil {
		return serial, burst, cpu, err
	}
	burst, err = taskLatencies(ctx, env.query, ids)
	return serial, burst, cpu, err
}

// runInProc runs orchestrator and worker in this process (each on its own pool, so their
// statements are counted apart; `tasker dev` shares one pool) and measures wl.
func runInProc(ctx context.Context, d *database, cfg Config, wl workload, tmplDir string, prof *profiler, detail bool, log *slog.Logger) (e2eResult, error) {
	var res e2eResult
	counters := map[string]*sqlCounter{"worker": newSQLCounter(detail), "orchestrator": newSQLCounter(detail), "client": newSQLCounter(detail)}
	wpool, err := d.pool(ctx, cfg.Concurrency+4, counters["worker"])
	if err != nil {
		return res, err
	}
	defer wpool.Close()
	opool, err := d.pool(ctx, 16, counters["orchestrator"])
	if err != nil {
		return res, err
	}
	defer opool.Close()
	cpool, err := d.pool(ctx, cfg.Submitters+2, counters["client"])
	if err != nil {
		return res, err
	}
	defer cpool.Close()
	qpool, err := d.pool(ctx, 2, nil)
	if err != nil {
		return res, err
	}
	defer qpool.Close()

	_, nss, err := worker.LoadAndRegisterTemplates(ctx, wpool, tmplDir)
	if err != nil {
		return res, err
	}
	reg := handlers.NewRegistry()
	if err := exhandlers.Register(reg); err != nil {
		return res, err
	}
	wcfg := worker.DefaultConfig()
	wcfg.Namespaces, wcfg.Concurrency = nss, cfg.Concurrency
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := worker.New(wcfg, wpool, reg, worker.WithLogger(log))
	if err != nil {
		return res, err
	}
	o, err := orchestration.New(orchestration.Config{}, opool, orchestration.WithLogger(log))
	if err != nil {
		return res, err
	}
	client, err := orchestration.New(orchestration.Config{}, cpool, orchestration.WithLogger(log))
	if err != nil {
		return res, err
	}
	done := make(chan error, 2)
	go func() { done <- o.Run(runCtx) }()
	go func() { done <- w.Run(runCtx) }()
	shutdown := func() error {
		stop()
		return errors.Join(<-done, <-done)
	}
	env := e2eEnv{client: client, query: qpool, dbCPU: d.srv.cpu, goCPU: selfCPU}
	if err := warmUp(ctx, env, wl); err != nil {
		_ = shutdown()
		return res, err
	}

	var ps *pgStat
	var before map[int64]pgStatEntry
	if detail {
		ps = newPGStat(ctx, qpool)
		if ps.ok {
			before, _ = ps.snapshot(ctx)
		}
	}
	sql0, sqlDetail0 := map[string]sqlTotals{}, map[string]map[string]sqlStat{}
	for k, c := range counters {
		sql0[k], sqlDetail0[k] = c.totals(), c.snapshot()
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, mach0 := selfCPU(), readMachineCPU()
	resetPeakRSS()
	phase := "e2e-" + wl.key
	stopProf, err := prof.start(phase)
	if err != nil {
		_ = shutdown()
		return res, err
	}
	res.Serial, res.Burst, res.BurstCPU, err = measure(ctx, env, wl, cfg)
	profErr := stopProf()
	runtime.ReadMemStats(&m1)
	cpu1, mach1 := selfCPU(), readMachineCPU()
	res.PeakRSSKB = procStatusKB(0, "VmHWM")
	var after map[int64]pgStatEntry
	if ps != nil && ps.ok {
		after, _ = ps.snapshot(ctx)
	}
	res.SQL = map[string]sqlTotals{}
	for k, c := range counters {
		res.SQL[k] = c.totals().sub(sql0[k])
	}
	if err := errors.Join(err, profErr, shutdown()); err != nil {
		return res, err
	}
	steps := res.Serial.Steps + res.Burst.Steps
	res.CPUPerStep = (cpu1 - cpu0) / time.Duration(max(steps, 1))
	res.MachineBusy = busyPercent(mach0, mach1)
	res.AllocsPerStep = float64(m1.Mallocs-m0.Mallocs) / float64(max(steps, 1))
	if detail {
		p := &SQLProfile{Phase: "e2e in-process " + wl.key, Steps: steps, Tasks: int64(res.Serial.N + res.Burst.N),
			Components: map[string]ComponentSQL{}, ByPool: map[string][]ClientStatement{}}
		for k, c := range counters {
			p.Components[k] = componentSQL(res.SQL[k], steps)
			p.ByPool[k] = diffStatements(sqlDetail0[k], c.snapshot(), steps)
		}
		if ps.ok {
			p.Server = diffServer(before, after, steps)
		} else {
			p.ServerNote = fmt.Sprintf("pg_stat_statements unavailable: %v", ps.err)
		}
		res.Profile = p
	}
	return res, nil
}

// runSeparate runs `tasker worker` and `tasker orchestrator` as child processes on the
// database and measures wl through CreateTask from this process.
func runSeparate(ctx context.Context, d *database, cfg Config, wl workload, tmplDir, bin, logDir string, detail bool) (e2eResult, error) {
	var res e2eResult
	level := cfg.LogLevel
	env := []string{"DATABASE_URL=" + d.url, "TASKER_TEMPLATE_PATH=" + tmplDir}
	wk, err := startChild(bin, "worker-"+wl.key, []string{"worker", "--log-level", level, "--concurrency", strconv.Itoa(cfg.Concurrency)}, env, logDir)
	if err != nil {
		return res, err
	}
	defer wk.stop(15 * time.Second) //nolint:errcheck // best effort on error paths
	orch, err := startChild(bin, "orchestrator-"+wl.key, []string{"orchestrator", "--log-level", level}, env, logDir)
	if err != nil {
		return res, err
	}
	defer orch.stop(15 * time.Second) //nolint:errcheck // best effort on error paths

	cpool, err := d.pool(ctx, cfg.Submitters+2, nil)
	if err != nil {
		return res, err
	}
	defer cpool.Close()
	qpool, err := d.pool(ctx, 2, nil)
	if err != nil {
		return res, err
	}
	defer qpool.Close()
	client, err := orchestration.New(orchestration.Config{}, cpool, orchestration.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return res, err
	}
	e := e2eEnv{client: client, query: qpool, dbCPU: d.srv.cpu, goCPU: func() time.Duration { return pidCPU(wk.pid()) + pidCPU(orch.pid()) }}
	if err := warmUp(ctx, e, wl); err != nil {
		return res, errors.Join(err, wk.exited(), orch.exited())
	}
	var ps *pgStat
	var before map[int64]pgStatEntry
	if detail {
		ps = newPGStat(ctx, qpool)
		if ps.ok {
			before, _ = ps.snapshot(ctx)
		}
	}
	wcpu0, ocpu0, mach0 := pidCPU(wk.pid()), pidCPU(orch.pid()), readMachineCPU()
	res.Serial, res.Burst, res.BurstCPU, err = measure(ctx, e, wl, cfg)
	if err != nil {
		return res, errors.Join(err, wk.exited(), orch.exited())
	}
	wcpu1, ocpu1, mach1 := pidCPU(wk.pid()), pidCPU(orch.pid()), readMachineCPU()
	res.PeakRSSKB = procStatusKB(wk.pid(), "VmHWM")
	res.OrchRSSKB = procStatusKB(orch.pid(), "VmHWM")
	var after map[int64]pgStatEntry
	if ps != nil && ps.ok {
		after, _ = ps.snapshot(ctx)
	}
	if err := errors.Join(wk.stop(15*time.Second), orch.stop(15*time.Second)); err != nil {
		return res, err
	}
	steps := max(res.Serial.Steps+res.Burst.Steps, 1)
	res.WorkerCPU = (wcpu1 - wcpu0) / time.Duration(steps)
	res.OrchCPU = (ocpu1 - ocpu0) / time.Duration(steps)
	res.MachineBusy = busyPercent(mach0, mach1)
	if detail {
		p := &SQLProfile{Phase: "e2e separate processes " + wl.key, Steps: steps, Tasks: int64(res.Serial.N + res.Burst.N)}
		if ps.ok {
			p.Server = diffServer(before, after, steps)
		} else {
			p.ServerNote = fmt.Sprintf("pg_stat_statements unavailable: %v", ps.err)
		}
		res.Profile = p
	}
	return res, nil
}
