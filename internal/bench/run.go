package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Run performs the configured measurements (or the memory soak), prints the table to cfg.Out
// and writes the JSON results to cfg.Output. It returns the results also on a partial failure.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	if cfg.SourceDir == "" {
		cfg.SourceDir = FindSourceDir()
	}
	log := newLogger(cfg.LogLevel)
	res := &Results{Started: time.Now().UTC(), Config: cfg}
	res.Environment = Environment{GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel: cpuModel()}
	fmt.Fprintf(out, "machine: %d CPUs (%s), %s\n", res.Environment.NumCPU, res.Environment.CPUModel, res.Environment.GoVersion)
	passes := durabilityPasses(cfg)
	if cfg.DatabaseURL != "" && cfg.Durability != DurabilityOn {
		res.Notes = append(res.Notes, "--durability="+cfg.Durability+" needs a server this bench starts; DATABASE_URL's server was measured with its own settings")
	}

	if cfg.Memory {
		srv, err := openPass(ctx, cfg, passes[0], res, newRecorder(), out)
		if err != nil {
			return nil, err
		}
		defer srv.close()
		err = runMemory(ctx, srv, cfg, res, out, log)
		res.Finished = time.Now().UTC()
		return res, errors.Join(err, writeJSON(cfg.Output, res))
	}

	tmp, err := os.MkdirTemp("", "tasker-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	wls := workflowList(workloads(cfg.SourceDir), cfg.Workflows)
	var tmplDir string
	b := binaries{}
	if cfg.has(PhaseInProc) || cfg.has(PhaseSeparate) {
		if tmplDir, err = templateDir(tmp, cfg.SourceDir, wls); err != nil {
			return nil, err
		}
	}
	if cfg.has(PhaseSeparate) {
		b.tasker = cfg.TaskerBin
		if b.tasker == "" {
			fmt.Fprintln(out, "building ./cmd/tasker for the separate-process runs")
			if b.tasker, err = buildTasker(ctx, cfg.SourceDir, tmp); err != nil {
				return nil, err
			}
		}
	}
	if cfg.has(PhaseRiver) {
		b.river = cfg.RiverBin
		if b.river == "" {
			fmt.Fprintf(out, "building the River peer (%s)\n", riverDir)
			if b.river, err = buildRiverPeer(ctx, cfg.SourceDir, tmp); err != nil {
				msg := fmt.Sprintf("River peer not built, so no River figures or ratios: %v", err)
				fmt.Fprintln(out, "  note:", clip(msg, 400))
				res.Notes = append(res.Notes, msg)
			}
		}
	}
	logDir := filepath.Join(tmp, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	prof := newProfiler(cfg.CPUProfile, cfg.MemProfile)
	rec := newRecorder()
	var runErr error
	for i, pass := range passes {
		srv, err := openPass(ctx, cfg, pass, res, rec, out)
		if err != nil {
			if i == 0 {
				return nil, err
			}
			runErr = err
			break
		}
		if len(passes) > 1 {
			fmt.Fprintf(out, "== durability %s\n", pass)
		}
		for run := range cfg.Runs {
			fmt.Fprintf(out, "== run %d of %d\n", run+1, cfg.Runs)
			detail := cfg.SQLStats && run == 0 && i == 0
			if err := oneRun(ctx, srv, cfg, rec, res, wls, tmplDir, b, logDir, prof, detail, out, log); err != nil {
				runErr = err
				fmt.Fprintf(out, "run %d failed: %v\n", run+1, err)
				break
			}
		}
		if runErr == nil && cfg.has(PhaseSweep) { // once: it takes the median of its own calls
			if runErr = runSweeps(ctx, srv, cfg, rec, out, log); runErr != nil {
				fmt.Fprintf(out, "sweep phase failed: %v\n", runErr)
			}
		}
		srv.close()
		if runErr != nil {
			break
		}
	}
	rec.keyPrefix, rec.sectionPrefix = "", ""
	res.Metrics = rec.finish()
	res.Finished = time.Now().UTC()
	if len(prof.written) > 0 {
		res.Notes = append(res.Notes, "profiles: "+strings.Join(prof.written, ", "))
	}
	fmt.Fprintln(out)
	if err := printTable(out, res.Metrics); err != nil {
		return res, err
	}
	for _, p := range res.SQL {
		printSQLProfile(out, p)
	}
	for _, n := range res.Notes {
		fmt.Fprintln(out, "note:", n)
	}
	if err := writeJSON(cfg.Output, res); err != nil {
		return res, errors.Join(runErr, err)
	}
	fmt.Fprintf(out, "results written to %s\n", cfg.Output)
	return res, runErr
}

// binaries are the programs the phases run: cmd/tasker (separate) and the River peer (river);
// empty when not needed or not built.
type binaries struct{ tasker, river string }

// durabilityPasses lists the server durability of each pass: durable first. A DATABASE_URL
// server is measured once, as it is.
func durabilityPasses(cfg Config) []string {
	switch {
	case cfg.DatabaseURL != "":
		return []string{"as configured"}
	case cfg.Durability == DurabilityBoth:
		return []string{DurabilityOn, DurabilityOff}
	default:
		return []string{cfg.Durability}
	}
}

// openPass opens the server of one durability pass, records and prints its settings, and points
// rec at the pass's keys: a server without durability gets DurabilityOffKeyPrefix.
func openPass(ctx context.Context, cfg Config, pass string, res *Results, rec *recorder, out io.Writer) (*server, error) {
	srv, err := openServer(ctx, cfg.DatabaseURL, pass, out)
	if err != nil {
		return nil, err
	}
	srv.keep = cfg.KeepDatabases
	info := srv.info(ctx)
	if res.Environment.Server.Source == "" {
		res.Environment.Server = info
	} else {
		res.Environment.ServerDurabilityOff = &info
	}
	rec.keyPrefix, rec.sectionPrefix = "", ""
	durability := "durable"
	if !info.Durable {
		rec.keyPrefix, rec.sectionPrefix = DurabilityOffKeyPrefix, durabilityOffSection
		durability = "NOT durable: figures keyed " + DurabilityOffKeyPrefix + "*"
	}
	fmt.Fprintf(out, "server: %s (PostgreSQL %s, %s)\n  settings: %s\n  database CPU: %s\n", srv.source, info.Version, durability,
		info.summary(), info.DBCPU)
	return srv, nil
}

// oneRun performs every selected measurement once, each in a fresh database.
func oneRun(ctx context.Context, srv *server, cfg Config, rec *recorder, res *Results, wls []workload,
	tmplDir string, b binaries, logDir string, prof *profiler, detail bool, out io.Writer, log *slog.Logger) error {
	var floorRate, workerRate, riverRate, riverHop float64
	stageMs := map[string]float64{} // mode → linear serial p50
	if cfg.has(PhaseFloor) {
		err := withDatabase(ctx, srv, cfg, rec, out, "floor", func(ctx context.Context, d *database) error {
			conns := cfg.Concurrency + 4
			fr, err := runFloor(ctx, d, conns, cfg.Concurrency, time.Second, cfg.FloorDuration)
			if err != nil {
				return err
			}
			floorRate = fr.CyclesPerSec
			fmt.Fprintf(out, "  floor: %.0f send+read+delete cycles/s (%d goroutines, pool of %d)\n", fr.CyclesPerSec, fr.Goroutines, fr.Conns)
			rec.add("1. PGMQ floor", "floor.cycles_per_s", fmt.Sprintf("send→read→delete cycles/s (%d goroutines, %d conns)", fr.Goroutines, fr.Conns), "cycles/s", fr.CyclesPerSec)
			rec.add("1. PGMQ floor", "floor.statements_per_s", "PGMQ statements/s (3 per cycle)", "stmts/s", 3*fr.CyclesPerSec)
			br, err := runBatchedFloor(ctx, d, cfg.FloorBatchGoroutines, cfg.FloorBatch, time.Second, cfg.FloorDuration)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "  batched floor: %.0f messages/s (send_batch %d → read %d → delete array; %d goroutines)\n", br.MsgsPerSec, br.Batch, br.Batch, br.Goroutines)
			rec.add("1. PGMQ floor", "floor_batched.msgs_per_s", fmt.Sprintf("batched: messages/s, send_batch %d → read %d → delete(bigint[]) (%d goroutines)", br.Batch, br.Batch, br.Goroutines), "msgs/s", br.MsgsPerSec)
			rec.add("1. PGMQ floor", "floor_batched.statements_per_s", "batched: PGMQ statements/s", "stmts/s", float64(br.Statements)/br.Elapsed.Seconds())
			rec.add("1. PGMQ floor", "ratio.floor_batched_over_naive", "batched messages/s ÷ naive cycles/s", "ratio", br.MsgsPerSec/fr.CyclesPerSec)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if cfg.has(PhaseWorker) {
		err := withDatabase(ctx, srv, cfg, rec, out, "worker", func(ctx context.Context, d *database) error {
			wr, err := runWorkerOnly(ctx, d, cfg, prof, detail, log)
			if err != nil {
				return err
			}
			workerRate = wr.StepsPerSec
			fmt.Fprintf(out, "  worker-only: %d steps in %s: %.0f steps/s (fed in %s)\n", wr.Steps, wr.DBSpan.Round(time.Millisecond), wr.StepsPerSec, wr.Feed.Round(time.Millisecond))
			const s = "2. worker only (no-op handler)"
			rec.add(s, "worker.steps_per_s", fmt.Sprintf("steps/s, %d pre-enqueued single-step tasks (DB timestamps)", cfg.WorkerTasks), "steps/s", wr.StepsPerSec)
			rec.add(s, "worker.wall_steps_per_s", "steps/s, wall clock from worker start", "steps/s", wr.WallPerSec)
			rec.add(s, "worker.allocs_per_step", "allocations per step (MemStats.Mallocs)", "allocs", wr.AllocsPerStep)
			rec.add(s, "worker.bytes_per_step", "bytes allocated per step", "B", wr.BytesPerStep)
			rec.add(s, "worker.cpu_ms_per_step", "worker CPU per step", "ms", float64(wr.CPUPerStep)/1e6)
			recordDBCPU(rec, out, s, "worker.db_cpu_ms_per_step", "database CPU per step (PostgreSQL processes, worker start → last step)", wr.CPU, wr.Steps)
			rec.add(s, "worker.machine_busy_pct", "machine CPU busy (worker + PostgreSQL)", "%", wr.MachineBusy)
			rec.add(s, "worker.peak_rss_mb", "peak RSS (VmHWM)", "MiB", float64(wr.PeakRSSKB)/1024)
			n := float64(max(wr.Steps, 1))
			rec.add(s, "worker.statements_per_step", "statements per step (client side)", "stmts", float64(wr.SQL.Statements)/n)
			rec.add(s, "worker.round_trips_per_step", "round trips per step (a pipelined batch = 1)", "trips", float64(wr.SQL.RoundTrips)/n)
			rec.add(s, "worker.tx_per_step", "transactions per step", "tx", float64(wr.SQL.Begins)/n)
			if wr.Profile != nil {
				res.SQL = append(res.SQL, *wr.Profile)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if floorRate > 0 && workerRate > 0 {
		rec.add("4. derived", "ratio.worker_over_floor", "worker steps/s ÷ PGMQ floor cycles/s", "ratio", workerRate/floorRate)
	}
	if cfg.has(PhaseRiver) && b.river != "" {
		err := withEmptyDatabase(ctx, srv, cfg, rec, out, "river", func(ctx context.Context, d *database) error {
			rr, err := runRiver(ctx, b.river, d, cfg, cfg.Concurrency+4)
			if err != nil {
				return err
			}
			riverRate, riverHop = rr.JobsPerSec, rr.HopP50Ms
			fmt.Fprintf(out, "  river %s: %.0f no-op jobs/s (%d jobs, %d workers, pool %d, FetchCooldown %gms); chain hop p50 %.2f ms, mean %.2f ms (%d hops)\n",
				rr.River, rr.JobsPerSec, rr.Jobs, rr.Workers, rr.PoolConns, rr.FetchCooldownMs, rr.HopP50Ms, rr.HopMeanMs, rr.Hops)
			rr.DurabilityOff = rec.keyPrefix != ""
			res.River = append(res.River, rr)
			s := "2r. River peer, same server"
			rec.add(s, "river.jobs_per_s", fmt.Sprintf("River %s no-op jobs/s, %d pre-inserted, %d workers, pool %d, FetchCooldown %gms", rr.River, rr.Jobs, rr.Workers, rr.PoolConns, rr.FetchCooldownMs), "jobs/s", rr.JobsPerSec)
			rec.add(s, "river.jobs_per_s_db", "no-op jobs/s by River's timestamps (attempted_at → finalized_at)", "jobs/s", rr.JobsPerSecDB)
			rec.add(s, "river.hop_ms", fmt.Sprintf("chain hop p50, each job inserts the next in its completing tx (%d hops)", rr.Hops), "ms", rr.HopP50Ms)
			rec.add(s, "river.hop_mean_ms", "chain hop mean", "ms", rr.HopMeanMs)
			rec.add(s, "river.hop_p95_ms", "chain hop p95", "ms", rr.HopP95Ms)
			return nil
		})
		if err != nil {
			// The peer is a yardstick: its failure leaves its figures out, not ours.
			fmt.Fprintf(out, "  river peer failed: %v\n", err)
			res.Notes = append(res.Notes, clip("River peer failed: "+err.Error(), 400))
		}
	}
	defer func() {
		r := riverRatios(workerRate, riverRate, stageMs[PhaseInProc], riverHop)
		rec.add("4. derived", "ratio.worker_over_river", "worker-only steps/s ÷ River no-op jobs/s (goal ≥ 0.5)", "ratio", r.WorkerOverRiver)
		rec.add("4. derived", "ratio.stage_over_river_hop", "linear per stage in-process (serial p50 ÷ 4) ÷ River hop p50 (goal ≤ 2)", "ratio", r.StageOverHop)
		r = riverRatios(workerRate, riverRate, stageMs[PhaseSeparate], riverHop)
		rec.add("4. derived", "ratio.stage_over_river_hop_separate", "linear per stage, separate processes ÷ River hop p50", "ratio", r.StageOverHop)
	}()
	for _, mode := range []string{PhaseInProc, PhaseSeparate} {
		if !cfg.has(mode) {
			continue
		}
		for _, wl := range wls {
			label := mode + "_" + wl.key
			began := time.Now()
			err := withDatabase(ctx, srv, cfg, rec, out, label, func(ctx context.Context, d *database) error {
				var r e2eResult
				var err error
				switch mode {
				case PhaseInProc:
					r, err = runInProc(ctx, d, cfg, wl, tmplDir, prof, detail, log)
				default:
					r, err = runSeparate(ctx, d, cfg, wl, tmplDir, b.tasker, logDir, detail)
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", mode, wl.key, err)
				}
				recordE2E(rec, out, mode, wl, r)
				if wl.key == WorkflowLinear {
					stageMs[mode] = r.Serial.P50
				}
				fmt.Fprintf(out, "  %s %s (%s): serial p50 %.1f ms (n=%d); burst %.1f tasks/s, %.0f steps/s, p50 %.1f ms\n", mode, wl.key, time.Since(began).Round(time.Second),
					r.Serial.P50, r.Serial.N, r.Burst.TasksPerSec, r.Burst.StepsPerSec, r.Burst.P50)
				if r.Profile != nil {
					res.SQL = append(res.SQL, *r.Profile)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func recordE2E(rec *recorder, out io.Writer, mode string, wl workload, r e2eResult) {
	sec := map[string]string{
		PhaseInProc:   "3a. end to end, orchestrator + worker in one process",
		PhaseSeparate: "3b. end to end, `tasker worker` + `tasker orchestrator` processes",
	}[mode]
	k := "e2e." + mode + "." + wl.key + "."
	w := wl.key
	rec.add(sec, k+"serial_p50_ms", w+": task latency p50, one task at a time", "ms", r.Serial.P50)
	rec.add(sec, k+"serial_p95_ms", w+": task latency p95, one at a time", "ms", r.Serial.P95)
	rec.add(sec, k+"serial_p99_ms", w+": task latency p99, one at a time", "ms", r.Serial.P99)
	rec.add(sec, k+"burst_tasks_per_s", fmt.Sprintf("%s: tasks/s, %d submitted at once", w, r.Burst.N), "tasks/s", r.Burst.TasksPerSec)
	rec.add(sec, k+"burst_steps_per_s", w+": steps/s in the burst", "steps/s", r.Burst.StepsPerSec)
	rec.add(sec, k+"burst_p50_ms", w+": task latency p50 under the burst", "ms", r.Burst.P50)
	rec.add(sec, k+"burst_p95_ms", w+": task latency p95 under the burst", "ms", r.Burst.P95)
	rec.add(sec, k+"burst_p99_ms", w+": task latency p99 under the burst", "ms", r.Burst.P99)
	rec.add(sec, k+"machine_busy_pct", w+": machine CPU busy", "%", r.MachineBusy)
	recordDBCPU(rec, out, sec, k+"db_cpu_ms_per_step", w+": database CPU per step in the burst (PostgreSQL processes)", r.BurstCPU, r.Burst.Steps)
	goWho := "this process"
	if mode == PhaseSeparate {
		goWho = "worker + orchestrator processes"
	}
	if r.BurstCPU.Elapsed > 0 && r.Burst.Steps > 0 {
		rec.add(sec, k+"burst_go_cpu_ms_per_step", w+": Go CPU per step in the burst ("+goWho+")", "ms", float64(r.BurstCPU.Go)/1e6/float64(r.Burst.Steps))
	}
	steps := float64(max(r.Serial.Steps+r.Burst.Steps, 1))
	if mode != PhaseSeparate {
		rec.add(sec, k+"peak_rss_mb", w+": peak RSS of this process (VmHWM)", "MiB", float64(r.PeakRSSKB)/1024)
		rec.add(sec, k+"cpu_ms_per_step", w+": process CPU per step (worker+orchestrator+client)", "ms", float64(r.CPUPerStep)/1e6)
		rec.add(sec, k+"allocs_per_step", w+": allocations per step (whole process, client and polling included)", "allocs", r.AllocsPerStep)
		for _, comp := range []string{"worker", "orchestrator", "client"} {
			t := r.SQL[comp]
			rec.add(sec, k+comp+"_statements_per_step", fmt.Sprintf("%s: %s statements per step", w, comp), "stmts", float64(t.Statements)/steps)
			rec.add(sec, k+comp+"_round_trips_per_step", fmt.Sprintf("%s: %s round trips per step", w, comp), "trips", float64(t.RoundTrips)/steps)
		}
	} else {
		rec.add(sec, k+"worker_peak_rss_mb", w+": worker process peak RSS (VmHWM)", "MiB", float64(r.PeakRSSKB)/1024)
		rec.add(sec, k+"orchestrator_peak_rss_mb", w+": orchestrator process peak RSS (VmHWM)", "MiB", float64(r.OrchRSSKB)/1024)
		rec.add(sec, k+"worker_cpu_ms_per_step", w+": worker process CPU per step", "ms", float64(r.WorkerCPU)/1e6)
		rec.add(sec, k+"orchestrator_cpu_ms_per_step", w+": orchestrator process CPU per step", "ms", float64(r.OrchCPU)/1e6)
	}
	// Sequential stages and tasker-core's published per-stage figure (orchestration.md §8.2).
	stages := map[string]struct {
		n    float64
		core string
	}{WorkflowLinear: {4, "64"}, WorkflowDiamond: {3, "67"}, WorkflowBatch: {3, "121"}}[wl.key]
	rec.add("4. derived", "overhead."+mode+"."+wl.key+"_ms_per_stage",
		fmt.Sprintf("%s: per sequential stage, serial p50 ÷ %.0f (%s; tasker-core: %s)", w, stages.n, mode, stages.core), "ms", r.Serial.P50/stages.n)
}

// recordDBCPU records the database CPU per step of a window when it was measured and is
// plausible (no more than elapsed × CPUs), and says why when it is not.
func recordDBCPU(rec *recorder, out io.Writer, section, key, label string, u cpuUse, steps int64) {
	switch {
	case !u.DBOK || steps <= 0:
		return
	case !plausibleCPU(u.DB, u.Elapsed, runtime.NumCPU()):
		fmt.Fprintf(out, "  warning: %s: database CPU %s over %s on %d CPUs is implausible; not recorded\n", key, u.DB, u.Elapsed.Round(time.Millisecond), runtime.NumCPU())
		return
	}
	rec.add(section, key, label, "ms", float64(u.DB)/1e6/float64(steps))
}

// withDatabase runs fn on a fresh database (bounded by cfg.Timeout) and drops it afterwards.
// It records the machine's load average when the measurement starts: other processes on the
// machine skew every figure, and the table shows it.
func withDatabase(ctx context.Context, srv *server, cfg Config, rec *recorder, out io.Writer, label string, fn func(context.Context, *database) error) error {
	load := loadAverage1()
	rec.add("0. machine", "machine.loadavg1."+label, "load average (1 min) before "+label, "load", load)
	if load > float64(runtime.NumCPU()) {
		fmt.Fprintf(out, "  warning: load average %.1f on %d CPUs before %s: other processes will skew it\n", load, runtime.NumCPU(), label)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	d, err := srv.freshDatabase(ctx, label)
	if err != nil {
		return err
	}
	defer d.drop()
	return fn(ctx, d)
}

// withEmptyDatabase is withDatabase on an empty database (no tasker schema).
func withEmptyDatabase(ctx context.Context, srv *server, cfg Config, rec *recorder, out io.Writer, label string, fn func(context.Context, *database) error) error {
	rec.add("0. machine", "machine.loadavg1."+label, "load average (1 min) before "+label, "load", loadAverage1())
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	d, err := srv.emptyDatabase(ctx, label)
	if err != nil {
		return err
	}
	defer d.drop()
	return fn(ctx, d)
}

func runMemory(ctx context.Context, srv *server, cfg Config, res *Results, out io.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, max(cfg.Timeout, time.Hour))
	defer cancel()
	d, err := srv.freshDatabase(ctx, "memory")
	if err != nil {
		return err
	}
	defer d.drop()
	soak, err := runSoak(ctx, d, cfg, out, log)
	res.Soak = soak
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmemory soak: %d steps in %.1fs (%.0f steps/s; first quarter %.0f/s, last quarter %.0f/s)\n%s\n",
		soak.Tasks, soak.Duration, soak.StepsPerSec, soak.FirstRate, soak.LastRate, soak.Verdict)
	return nil
}

// printSQLProfile prints a phase's per-step statement counts and its top statements.
func printSQLProfile(w io.Writer, p SQLProfile) {
	fmt.Fprintf(w, "\nSQL profile: %s (%d steps, %d tasks)\n", p.Phase, p.Steps, p.Tasks)
	for _, comp := range []string{"worker", "orchestrator", "client"} {
		c, ok := p.Components[comp]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %-12s %6.2f statements/step  %6.2f round trips/step  %5.2f transactions/step  (%d prepares)\n",
			comp, c.StatementsPerStep, c.RoundTripsPerStep, c.TxPerStep, c.Prepares)
	}
	if len(p.Server) > 0 {
		var total float64
		for _, s := range p.Server {
			total += s.MsPerStep
		}
		fmt.Fprintf(w, "  pg_stat_statements: %.3f ms server time per step; top statements by total time:\n", total)
		for i, s := range p.Server {
			if i == 15 {
				break
			}
			fmt.Fprintf(w, "    %8.3f ms/step  %5.2f calls/step  %7.3f ms/call  %s\n", s.MsPerStep, s.CallsPerStep, s.MeanMs, clip(s.Query, 110))
		}
	} else if p.ServerNote != "" {
		fmt.Fprintf(w, "  %s\n", clip(p.ServerNote, 160))
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// FindSourceDir returns the tasker-go module root: the working directory or one of its parents
// holding go.mod of github.com/tasker-go/tasker, else the tree this package was built from.
func FindSourceDir() string {
	if dir, err := os.Getwd(); err == nil {
		for d := dir; ; d = filepath.Dir(d) {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/tasker-go/tasker\n") {
				return d
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	_, file, _, ok := runtime.Caller(0)
	if ok {
		return filepath.Join(filepath.Dir(file), "..", "..")
	}
	return "."
}
