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
	srv, err := openServer(ctx, cfg.DatabaseURL, out)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	srv.keep = cfg.KeepDatabases
	res.Environment = Environment{GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel: cpuModel(), Server: srv.info(ctx)}
	fmt.Fprintf(out, "server: %s (PostgreSQL %s; fsync=%s synchronous_commit=%s shared_buffers=%s)\n", srv.source,
		res.Environment.Server.Version, res.Environment.Server.Settings["fsync"], res.Environment.Server.Settings["synchronous_commit"],
		res.Environment.Server.Settings["shared_buffers"])
	fmt.Fprintf(out, "machine: %d CPUs (%s), %s\n", res.Environment.NumCPU, res.Environment.CPUModel, res.Environment.GoVersion)

	if cfg.Memory {
		err := runMemory(ctx, srv, cfg, res, out, log)
		res.Finished = time.Now().UTC()
		return res, errors.Join(err, writeJSON(cfg.Output, res))
	}

	tmp, err := os.MkdirTemp("", "tasker-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	wls := workflowList(workloads(cfg.SourceDir), cfg.Workflows)
	var tmplDir, bin string
	if cfg.has(PhaseInProc) || cfg.has(PhaseSeparate) {
		if tmplDir, err = templateDir(tmp, cfg.SourceDir, wls); err != nil {
			return nil, err
		}
	}
	if cfg.has(PhaseSeparate) {
		bin = cfg.TaskerBin
		if bin == "" {
			fmt.Fprintln(out, "building ./cmd/tasker for the separate-process runs")
			if bin, err = buildTasker(ctx, cfg.SourceDir, tmp); err != nil {
				return nil, err
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
	for run := range cfg.Runs {
		fmt.Fprintf(out, "== run %d of %d\n", run+1, cfg.Runs)
		detail := cfg.SQLStats && run == 0
		if err := oneRun(ctx, srv, cfg, rec, res, wls, tmplDir, bin, logDir, prof, detail, out, log); err != nil {
			runErr = err
			fmt.Fprintf(out, "run %d failed: %v\n", run+1, err)
			break
		}
	}
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

// oneRun performs every selected measurement once, each in a fresh database.
func oneRun(ctx context.Context, srv *server, cfg Config, rec *recorder, res *Results, wls []workload,
	tmplDir, bin, logDir string, prof *profiler, detail bool, out io.Writer, log *slog.Logger) error {
	var floorRate, workerRate float64
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
					r, err = runSeparate(ctx, d, cfg, wl, tmplDir, bin, logDir, detail)
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", mode, wl.key, err)
				}
				recordE2E(rec, mode, wl, r)
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

func recordE2E(rec *recorder, mode string, wl workload, r e2eResult) {
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
