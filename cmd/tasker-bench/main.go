// Command tasker-bench measures tasker-go on a real PostgreSQL: the raw PGMQ floors (naive and
// batched), worker-only step throughput, River as a peer on the same server, end-to-end latency
// and throughput (in one process and as separate `tasker worker` / `tasker orchestrator`
// processes), memory, allocations, SQL and database CPU per step.
// Every measurement runs in a fresh database; figures are medians of --runs runs. It prints a
// table and writes the same figures as JSON.
//
// The server is DATABASE_URL (or --database-url); without one it starts TASKER_TEST_PG_IMAGE in
// Docker (`make pg-image` builds the local tasker-go/postgres:15), durable by default
// (--durability).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tasker-go/tasker/internal/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	quick := false
	for _, a := range os.Args[1:] {
		if a == "--quick" || a == "-quick" || a == "--quick=true" || a == "-quick=true" {
			quick = true
		}
	}
	cfg := bench.DefaultConfig()
	if quick {
		cfg = bench.QuickConfig()
	}
	fs := flag.NewFlagSet("tasker-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tasker-bench [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var only, workflows string
	fs.Bool("quick", quick, "reduced sizes and one run, for CI (< 2 minutes); explicit flags still override")
	fs.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server URL (default $DATABASE_URL; empty: start $TASKER_TEST_PG_IMAGE in Docker)")
	fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "repetitions of every measurement; figures are medians")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "worker handler concurrency C (worker pool C+4; floor: C goroutines on C+4 connections)")
	fs.DurationVar(&cfg.FloorDuration, "floor-duration", cfg.FloorDuration, "how long each PGMQ floor (naive, batched) is measured")
	fs.IntVar(&cfg.FloorBatch, "floor-batch", cfg.FloorBatch, "batched PGMQ floor: messages per send_batch / read / delete")
	fs.IntVar(&cfg.FloorBatchGoroutines, "floor-batch-goroutines", cfg.FloorBatchGoroutines, "batched PGMQ floor: goroutines (one connection each)")
	fs.StringVar(&cfg.Durability, "durability", cfg.Durability, "server the bench starts: on (fsync, synchronous_commit, full_page_writes on), off, or both (durable first; off figures keyed durability_off.*)")
	fs.IntVar(&cfg.RiverJobs, "river-jobs", cfg.RiverJobs, "River peer: no-op jobs pre-inserted for jobs/s")
	fs.IntVar(&cfg.RiverHops, "river-hops", cfg.RiverHops, "River peer: measured hops of the chain")
	fs.IntVar(&cfg.RiverWorkers, "river-workers", cfg.RiverWorkers, "River peer: MaxWorkers (its pool gets concurrency+4 connections, as the worker's)")
	fs.StringVar(&cfg.RiverBin, "river-bin", "", "prebuilt River peer (default: go build bench/peers/river; needs River's modules)")
	fs.IntVar(&cfg.WorkerTasks, "n", cfg.WorkerTasks, "worker-only: single-step tasks pre-enqueued")
	fs.IntVar(&cfg.SerialTasks, "serial", cfg.SerialTasks, "end to end: tasks per workflow run one at a time (latency)")
	fs.IntVar(&cfg.BurstTasks, "burst", cfg.BurstTasks, "end to end: linear/diamond tasks submitted at once (throughput)")
	fs.IntVar(&cfg.BatchBurstTasks, "batch-burst", cfg.BatchBurstTasks, "end to end: batch tasks submitted at once")
	fs.IntVar(&cfg.Submitters, "submitters", cfg.Submitters, "goroutines calling CreateTask in a burst")
	fs.StringVar(&only, "only", strings.Join(cfg.Only, ","), "phases to run: "+strings.Join(bench.AllPhases, ","))
	fs.StringVar(&workflows, "workflows", strings.Join(cfg.Workflows, ","), "end-to-end workflows: "+strings.Join(bench.AllWorkflows, ","))
	fs.StringVar(&cfg.Output, "out", filepath.Join("bench-results", time.Now().UTC().Format("20060102T150405Z")+".json"), "JSON results path")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile per phase (first run): PATH with the phase before the extension")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "write an allocation profile per phase (first run), with a .base profile taken at its start")
	fs.BoolVar(&cfg.SQLStats, "sql-stats", false, "per-statement counts and times for the first run (pg_stat_statements when the server preloads it)")
	fs.BoolVar(&cfg.Memory, "memory", false, "memory soak instead of the measurements: --memory-tasks single-step tasks through the worker")
	fs.IntVar(&cfg.MemoryTasks, "memory-tasks", cfg.MemoryTasks, "memory soak: tasks")
	fs.DurationVar(&cfg.MemoryInterval, "memory-interval", cfg.MemoryInterval, "memory soak: sampling period")
	fs.StringVar(&cfg.TaskerBin, "tasker-bin", "", "prebuilt cmd/tasker binary for the separate-process runs (default: go build it)")
	fs.StringVar(&cfg.SourceDir, "source", "", "tasker-go module root (default: found from the working directory)")
	fs.BoolVar(&cfg.KeepDatabases, "keep", false, "keep the measurement databases")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "worker/orchestrator log level (info logs every step)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "limit for one measurement")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tasker-bench: unexpected arguments %v\n", fs.Args())
		return 2
	}
	cfg.Only = split(only)
	cfg.Workflows = split(workflows)
	cfg.Out = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "tasker-bench: %v\n", err)
		return 1
	}
	return 0
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
