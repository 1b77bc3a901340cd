// Command tasker-chaos is the worker the chaos tests (integration/chaos) run in containers: the
// example handlers, each wrapped to record its invocation and sleep CHAOS_SLEEP_MIN_MS..
// CHAOS_SLEEP_MAX_MS first (so a SIGKILL lands mid-handler), and a ledger row written inside
// every completion transaction (integration/chaos/probe). CHAOS_SLOW_PERMILLE of the invocations
// sleep CHAOS_SLOW_MS instead (default 0 and 2500). Configuration is the worker's own:
// the TOML file (TASKER_CONFIG_PATH) and TASKER_* variables; logs are JSON on stderr, and a
// metrics snapshot is logged every CHAOS_METRICS_EVERY (default 5s) and at exit.
//
// Usage: tasker-chaos worker
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/config"
	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/domainevents"
	exdomainevents "github.com/tasker-go/tasker/examples/domainevents"
	exhandlers "github.com/tasker-go/tasker/examples/handlers"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/chaos/probe"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(os.Args) < 2 || os.Args[1] != "worker" {
		fmt.Fprintln(os.Stderr, "usage: tasker-chaos worker")
		os.Exit(2)
	}
	if err := runWorker(ctx, log); err != nil {
		log.Error("tasker-chaos worker failed", "error", err)
		os.Exit(1)
	}
}

func runWorker(ctx context.Context, log *slog.Logger) error {
	cfg, err := config.Load(config.Options{Getenv: os.Getenv})
	if err != nil {
		return err
	}
	wc := cfg.Worker
	base := log
	log = log.With("worker_id", wc.WorkerID)
	pool, err := connectRetry(ctx, cfg.Database.URL, max(cfg.Database.MaxConns, wc.Concurrency+4), 2*time.Minute, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	side, err := connectRetry(ctx, cfg.Database.URL, 4, 2*time.Minute, log)
	if err != nil {
		return err
	}
	defer side.Close()
	if err := probe.EnsureSchema(ctx, pool); err != nil {
		return err
	}
	if cfg.TemplatePath != "" {
		tmpls, nss, err := worker.LoadAndRegisterTemplates(ctx, pool, cfg.TemplatePath)
		if err != nil {
			return err
		}
		log.Info("templates registered", "count", len(tmpls), "namespaces", nss)
		if len(wc.Namespaces) == 0 {
			wc.Namespaces = nss
		}
	}

	reg := handlers.NewRegistry()
	if err := exhandlers.Register(reg); err != nil {
		return err
	}
	pubs := domainevents.NewPublisherRegistry(log)
	if err := exdomainevents.Register(pubs); err != nil {
		return err
	}
	inner := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{
		Publishers: pubs,
		Bus:        domainevents.NewBus(domainevents.NewSubscriberRegistry(), domainevents.BusConfig{Logger: log}),
		Queue:      queue.NewClient(pool),
		Logger:     log,
	})
	rec := probe.NewRecorder(side, wc.WorkerID, probe.Sleeps{
		Min: envMillis("CHAOS_SLEEP_MIN_MS", 50), Max: envMillis("CHAOS_SLEEP_MAX_MS", 300),
		Slow: envMillis("CHAOS_SLOW_MS", 2500), SlowPermille: envInt("CHAOS_SLOW_PERMILLE", 0),
	}, log)
	ledger := &probe.Ledger{Inner: inner, Side: side, WorkerID: wc.WorkerID, Log: log}
	w, err := worker.New(wc, pool, probe.Resolver{Base: reg, Recorder: rec}, worker.WithLogger(base), worker.WithEvents(ledger))
	if err != nil {
		return err
	}
	every := envMillis("CHAOS_METRICS_EVERY_MS", 5000)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				logSnapshot(log, w, "worker metrics")
			}
		}
	}()
	err = w.Run(ctx)
	close(done)
	logSnapshot(log, w, "worker final metrics")
	return err
}

// logSnapshot logs the counters the chaos report reads.
func logSnapshot(log *slog.Logger, w *worker.Worker, msg string) {
	s := w.Metrics().Snapshot()
	log.Info(msg, "claimed", s.Claimed, "completed", s.Completed, "failed", s.Failed, "malformed", s.Malformed,
		"duplicates", s.Duplicates, "archived", s.Archived, "recovered", s.Recovered,
		"in_progress_elsewhere", s.InProgressElsewhere, "late_rejected", s.LateRejected,
		"interrupted", s.Interrupted, "db_errors", s.DBErrors, "in_flight", s.InFlight)
}

// connectRetry opens a pool, retrying while the database is unreachable (a replacement worker
// may start while PostgreSQL restarts).
func connectRetry(ctx context.Context, url string, maxConns int, within time.Duration, log *slog.Logger) (*pgxpool.Pool, error) {
	pc, err := db.Config(url)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = int32(maxConns)
	deadline := time.Now().Add(within)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		pool, err := db.ConnectConfig(cctx, pc)
		cancel()
		if err == nil {
			return pool, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, errors.Join(err, ctx.Err())
		}
		log.Warn("database unreachable; retrying", "error", err)
		time.Sleep(time.Second)
	}
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v >= 0 {
		return v
	}
	return def
}

func envMillis(key string, def int) time.Duration {
	return time.Duration(envInt(key, def)) * time.Millisecond
}
