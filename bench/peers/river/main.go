// Command river-peer measures River (github.com/riverqueue/river) on a PostgreSQL database, as
// the peer tasker-bench prints beside tasker-go's figures. It is its own module so tasker-go
// does not depend on River.
//
// Given an empty database it creates River's schema with rivermigrate, then measures
//
//   - no-op throughput: -jobs jobs inserted up front (InsertManyFast), then one client with
//     -workers workers on the default queue runs them. jobs_per_s is jobs ÷ (first Work call →
//     last job-completed event, both client clock; the event arrives once the completion is
//     committed); jobs_per_s_db is the same from River's own timestamps (min attempted_at, set by
//     the database at fetch → max finalized_at, set by the client when the job finished).
//   - sequential hop: a chain of -hops jobs, each inserting the next inside a transaction that
//     also completes it (InsertTx + JobCompleteTx). A hop is the time between the starts of two
//     consecutive jobs' Work (client clock); the first -warmup hops are left out.
//
// It prints one JSON object on stdout; progress and errors go to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// result is the JSON this command prints.
type result struct {
	River           string  `json:"river_version"`
	Jobs            int     `json:"jobs"`
	Workers         int     `json:"workers"`
	PoolConns       int     `json:"pool_conns"`
	FetchCooldownMs float64 `json:"fetch_cooldown_ms"`
	FetchPollMs     float64 `json:"fetch_poll_interval_ms"`
	InsertMs        float64 `json:"insert_ms"`
	JobsPerSec      float64 `json:"jobs_per_s"`
	JobsPerSecDB    float64 `json:"jobs_per_s_db"`
	Hops            int     `json:"hops"`
	HopMode         string  `json:"hop_mode"`
	HopP50Ms        float64 `json:"hop_p50_ms"`
	HopMeanMs       float64 `json:"hop_mean_ms"`
	HopP95Ms        float64 `json:"hop_p95_ms"`
	ThroughputNote  string  `json:"throughput_timing"`
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	once  sync.Once
	first time.Time
}

func (w *noopWorker) Work(context.Context, *river.Job[noopArgs]) error {
	w.once.Do(func() { w.first = time.Now() })
	return nil
}

type hopArgs struct {
	N int `json:"n"`
}

func (hopArgs) Kind() string { return "bench_hop" }

// hopWorker runs the chain: job n inserts job n+1 and completes itself in one transaction.
type hopWorker struct {
	river.WorkerDefaults[hopArgs]
	pool   *pgxpool.Pool
	last   int
	starts []time.Time // indexed by n
	done   chan struct{}
	errs   chan error
}

func (w *hopWorker) Work(ctx context.Context, job *river.Job[hopArgs]) error {
	w.starts[job.Args.N] = time.Now()
	if job.Args.N == w.last {
		close(w.done)
		return nil
	}
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := river.ClientFromContext[pgx.Tx](ctx).InsertTx(ctx, tx, hopArgs{N: job.Args.N + 1}, nil); err != nil {
			return err
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if err != nil {
		w.errs <- err
	}
	return err
}

func main() {
	url := flag.String("database-url", os.Getenv("DATABASE_URL"), "an empty database for River's schema")
	jobs := flag.Int("jobs", 20000, "no-op jobs inserted before the client starts")
	workers := flag.Int("workers", 16, "MaxWorkers of the default queue")
	conns := flag.Int("pool", 14, "pool connections (tasker-go's worker gets concurrency+4)")
	hops := flag.Int("hops", 200, "measured hops of the chain")
	warmup := flag.Int("warmup", 5, "hops before the measured ones")
	cooldown := flag.Duration("fetch-cooldown", time.Millisecond, "River FetchCooldown (River's default is 100ms, its minimum 1ms)")
	poll := flag.Duration("fetch-poll", time.Second, "River FetchPollInterval (River's default is 1s)")
	timeout := flag.Duration("timeout", 5*time.Minute, "limit for everything")
	flag.Parse()
	if *url == "" || *jobs < 1 || *hops < 1 || *workers < 1 || *conns < 2 {
		fmt.Fprintln(os.Stderr, "river-peer: -database-url is required; -jobs, -hops, -workers must be positive, -pool at least 2")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res := result{River: riverVersion(), Jobs: *jobs, Workers: *workers, PoolConns: *conns, Hops: *hops,
		FetchCooldownMs: ms(*cooldown), FetchPollMs: ms(*poll),
		HopMode:        "InsertTx of the next job + JobCompleteTx in one transaction",
		ThroughputNote: "client clock: first Work call → last job-completed event (after the completion commits)"}
	if err := run(ctx, *url, *conns, *workers, *warmup, *cooldown, *poll, &res); err != nil {
		fmt.Fprintf(os.Stderr, "river-peer: %v\n", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(1)
	}
}

func run(ctx context.Context, url string, conns, workers, warmup int, cooldown, poll time.Duration, res *result) error {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.MaxConns = int32(conns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mig, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: log})
	if err != nil {
		return err
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := throughput(ctx, pool, workers, cooldown, poll, log, res); err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	if err := chain(ctx, pool, workers, warmup, cooldown, poll, log, res); err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	return nil
}

func newClient(pool *pgxpool.Pool, workers *river.Workers, maxWorkers int, cooldown, poll time.Duration, log *slog.Logger) (*river.Client[pgx.Tx], error) {
	return river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		Workers:           workers,
		FetchCooldown:     cooldown,
		FetchPollInterval: poll,
		Logger:            log,
	})
}

func throughput(ctx context.Context, pool *pgxpool.Pool, maxWorkers int, cooldown, poll time.Duration, log *slog.Logger, res *result) error {
	w := &noopWorker{}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := newClient(pool, workers, maxWorkers, cooldown, poll, log)
	if err != nil {
		return err
	}
	params := make([]river.InsertManyParams, res.Jobs)
	for i := range params {
		params[i] = river.InsertManyParams{Args: noopArgs{}}
	}
	t0 := time.Now()
	if _, err := client.InsertManyFast(ctx, params); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	res.InsertMs = ms(time.Since(t0))
	if _, err := pool.Exec(ctx, "ANALYZE river_job"); err != nil {
		return err
	}
	events, cancelSub := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancelSub()
	if err := client.Start(ctx); err != nil {
		return err
	}
	defer stop(client)
	var last time.Time
	for n := 0; n < res.Jobs; {
		select {
		case ev := <-events:
			if ev.Kind != river.EventKindJobCompleted {
				return fmt.Errorf("job %d failed", ev.Job.ID)
			}
			n++
			last = time.Now()
		case <-ctx.Done():
			return fmt.Errorf("%d of %d jobs completed: %w", n, res.Jobs, ctx.Err())
		}
	}
	span := last.Sub(w.first)
	if span <= 0 {
		return errors.New("completions span no time")
	}
	res.JobsPerSec = float64(res.Jobs) / span.Seconds()
	var dbSpan float64
	if err := pool.QueryRow(ctx, `SELECT extract(epoch FROM max(finalized_at) - min(attempted_at))::float8
		FROM river_job WHERE kind = 'bench_noop' AND state = 'completed'`).Scan(&dbSpan); err == nil && dbSpan > 0 {
		res.JobsPerSecDB = float64(res.Jobs) / dbSpan
	}
	return nil
}

func chain(ctx context.Context, pool *pgxpool.Pool, maxWorkers, warmup int, cooldown, poll time.Duration, log *slog.Logger, res *result) error {
	total := warmup + res.Hops
	w := &hopWorker{pool: pool, last: total, starts: make([]time.Time, total+1), done: make(chan struct{}), errs: make(chan error, total+1)}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := newClient(pool, workers, maxWorkers, cooldown, poll, log)
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	defer stop(client)
	if _, err := client.Insert(ctx, hopArgs{N: 0}, nil); err != nil {
		return err
	}
	select {
	case <-w.done:
	case err := <-w.errs:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	hops := make([]float64, 0, res.Hops)
	var sum float64
	for n := warmup; n < total; n++ {
		h := ms(w.starts[n+1].Sub(w.starts[n]))
		hops = append(hops, h)
		sum += h
	}
	slices.Sort(hops)
	res.HopP50Ms = percentile(hops, 50)
	res.HopP95Ms = percentile(hops, 95)
	res.HopMeanMs = sum / float64(len(hops))
	return nil
}

func stop(c *river.Client[pgx.Tx]) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "river-peer: stop: %v\n", err)
	}
}

// percentile is the nearest-rank percentile p of sorted values.
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func riverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/riverqueue/river" {
				return d.Version
			}
		}
	}
	return "unknown"
}
