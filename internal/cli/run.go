package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/worker"
)

// workerFlags are the flags shared by worker and dev.
type workerFlags struct {
	dbURL, templates, namespaces, logLevel string
	concurrency                            int
}

func (f *workerFlags) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
}) {
	fs.StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	fs.StringVar(&f.templates, "templates", "", "task template directory registered at start (default $TASKER_TEMPLATE_PATH)")
	fs.StringVar(&f.namespaces, "namespaces", "", "comma-separated namespaces to consume (default $TASKER_NAMESPACES, else the templates' namespaces)")
	fs.IntVar(&f.concurrency, "concurrency", 0, "handlers running at once (default $TASKER_CONCURRENCY, else 10)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug|info|warn|error")
}

// workerConfig builds the worker configuration: defaults < environment < flags.
func (f *workerFlags) workerConfig(env Env) (worker.Config, error) {
	cfg, err := worker.DefaultConfig().FromEnv(env.Getenv)
	if err != nil {
		return cfg, &configError{err}
	}
	if f.dbURL != "" {
		cfg.DatabaseURL = f.dbURL
	}
	if f.templates != "" {
		cfg.TemplatePath = f.templates
	}
	if f.namespaces != "" {
		cfg.Namespaces = splitComma(f.namespaces)
	}
	if f.concurrency != 0 {
		cfg.Concurrency = f.concurrency
	}
	return cfg, nil
}

// startWorker registers templates, fills in namespaces and returns a worker ready to Run.
func startWorker(ctx context.Context, env Env, cfg worker.Config, pool *pgxpool.Pool, log *slog.Logger, opts ...worker.Option) (*worker.Worker, error) {
	if cfg.TemplatePath != "" {
		tmpls, nss, err := worker.LoadAndRegisterTemplates(ctx, pool, cfg.TemplatePath)
		if err != nil {
			return nil, &configError{err}
		}
		log.Info("templates registered", "count", len(tmpls), "namespaces", nss, "path", cfg.TemplatePath)
		if len(cfg.Namespaces) == 0 {
			cfg.Namespaces = nss
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, &configError{err}
	}
	w, err := worker.New(cfg, pool, env.Registry, append([]worker.Option{worker.WithLogger(log)}, opts...)...)
	if err != nil {
		return nil, &configError{err}
	}
	return w, nil
}

func openPool(ctx context.Context, url string, maxConns int) (*pgxpool.Pool, error) {
	pc, err := db.Config(url)
	if err != nil {
		return nil, &configError{err}
	}
	if maxConns > 0 {
		pc.MaxConns = int32(maxConns)
	}
	return db.ConnectConfig(ctx, pc)
}

func runWorker(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "worker", "worker [flags]")
	var wf workerFlags
	wf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := wf.workerConfig(env)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return &configError{fmt.Errorf("config DATABASE_URL: required")}
	}
	log := logger(env, wf.logLevel)
	pool, err := openPool(ctx, cfg.DatabaseURL, max(cfg.MaxConns, cfg.Concurrency+4))
	if err != nil {
		return err
	}
	defer pool.Close()
	w, err := startWorker(ctx, env, cfg, pool, log)
	if err != nil {
		return err
	}
	stopStatus := logStatusOnSIGUSR1(ctx, log, func() any { return w.Metrics().Snapshot() })
	defer stopStatus()
	return w.Run(ctx)
}

// logStatusOnSIGUSR1 logs status() whenever the process receives SIGUSR1.
func logStatusOnSIGUSR1(ctx context.Context, log *slog.Logger, status func() any) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				log.Info("status", "snapshot", fmt.Sprintf("%+v", status()))
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
