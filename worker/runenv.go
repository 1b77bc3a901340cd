package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/template"
)

// templateSet is what WithTemplates loaded in New and Run registers.
type templateSet struct {
	dir    string
	loaded []*template.TaskTemplate
}

// TemplateError reports task templates WithTemplates could not load: a missing directory, or
// invalid templates (Err is then a *template.LoadError naming every file and field).
type TemplateError struct {
	Dir string
	Err error
}

// Error names the directory and the problems.
func (e *TemplateError) Error() string {
	return fmt.Sprintf("worker: templates in %s: %v", e.Dir, e.Err)
}

// Unwrap returns the load error.
func (e *TemplateError) Unwrap() error { return e.Err }

// WithTemplates loads the task templates under dir when the worker is created (New fails with a
// *TemplateError if any is invalid; nothing is registered then), uses their namespaces when
// Config.Namespaces is empty, and registers them in named_tasks when Run starts, as
// tasker-core's worker does. An empty dir does nothing; the last WithTemplates wins.
func WithTemplates(dir string) Option {
	return func(w *Worker) {
		w.startTemplates = nil
		if dir != "" {
			w.startTemplates = &templateSet{dir: dir}
		}
	}
}

// loadTemplates reads the WithTemplates directory and fills in the namespaces.
func (w *Worker) loadTemplates() error {
	ts := w.startTemplates
	if ts == nil {
		return nil
	}
	tmpls, err := template.LoadDir(ts.dir)
	if err == nil && len(tmpls) == 0 {
		err = errors.New("no task templates found")
	}
	if err != nil {
		return &TemplateError{Dir: ts.dir, Err: err}
	}
	ts.loaded = tmpls
	if len(w.cfg.Namespaces) == 0 {
		for _, t := range tmpls {
			if !slices.Contains(w.cfg.Namespaces, t.NamespaceName) {
				w.cfg.Namespaces = append(w.cfg.Namespaces, t.NamespaceName)
			}
		}
		slices.Sort(w.cfg.Namespaces)
	}
	return nil
}

// registerTemplates stores the WithTemplates templates (RegisterTemplates) when Run starts.
func (w *Worker) registerTemplates(ctx context.Context) error {
	ts := w.startTemplates
	if ts == nil {
		return nil
	}
	if err := RegisterTemplates(ctx, w.pool, ts.loaded); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: nothing was claimed
		}
		return fmt.Errorf("worker: %w", err)
	}
	w.log.Info("templates registered", "count", len(ts.loaded), "path", ts.dir)
	return nil
}

// Exit codes of Main.
const (
	ExitOK      = 0 // stopped gracefully
	ExitFailure = 1 // the database was unreachable, or the worker failed while running
	ExitConfig  = 3 // invalid configuration or task templates
)

// RunFromEnv runs a worker configured from the environment until ctx is cancelled, then drains
// it (Run). The configuration is DefaultConfig().FromEnv(os.Getenv) (the TASKER_* variables);
// the pool connects to DATABASE_URL (required) with application_name tasker-worker and
// TASKER_DB_MAX_CONNS connections (default Concurrency+4); TASKER_TEMPLATE_PATH, when set, adds
// WithTemplates before opts (so an explicit WithTemplates replaces it). Configuration problems
// are returned as *ConfigError or *TemplateError.
func RunFromEnv(ctx context.Context, resolver Resolver, opts ...Option) error {
	cfg, err := DefaultConfig().FromEnv(os.Getenv)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return err
	}
	url := strings.TrimSpace(os.Getenv("DATABASE_URL"))
	if url == "" {
		return &ConfigError{Key: "DATABASE_URL", Message: "required"}
	}
	if dir := strings.TrimSpace(os.Getenv("TASKER_TEMPLATE_PATH")); dir != "" {
		opts = append([]Option{WithTemplates(dir)}, opts...)
	}
	maxConns := cfg.Concurrency + 4
	if v := strings.TrimSpace(os.Getenv("TASKER_DB_MAX_CONNS")); v != "" {
		if maxConns, err = strconv.Atoi(v); err != nil || maxConns < 1 || maxConns > math.MaxInt32 {
			return &ConfigError{Key: "TASKER_DB_MAX_CONNS", Message: fmt.Sprintf("%q is not a positive whole number", v)}
		}
	}
	pc, err := db.Config(url, db.WithAppName("tasker-worker"))
	if err != nil {
		return &ConfigError{Key: "DATABASE_URL", Message: err.Error()}
	}
	pc.MaxConns = int32(maxConns)
	pool, err := db.ConnectConfig(ctx, pc)
	if err != nil {
		return err
	}
	defer pool.Close()
	w, err := New(cfg, pool, resolver, opts...)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Main is RunFromEnv for a worker binary's main function: it stops gracefully on SIGINT or
// SIGTERM, logs a failure with slog.Default(), and returns the process exit code (ExitOK,
// ExitConfig for a *ConfigError or *TemplateError, else ExitFailure).
//
//	func main() {
//		reg := handlers.NewRegistry()
//		reg.MustRegister("linear_workflow.step_1", handlers.Func(square))
//		os.Exit(worker.Main(reg))
//	}
func Main(resolver Resolver, opts ...Option) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := RunFromEnv(ctx, resolver, opts...)
	if err == nil {
		return ExitOK
	}
	var ce *ConfigError
	var te *TemplateError
	if errors.As(err, &ce) || errors.As(err, &te) {
		slog.Error("worker: invalid configuration", "error", err)
		return ExitConfig
	}
	slog.Error("worker stopped", "error", err)
	return ExitFailure
}
