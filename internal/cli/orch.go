package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/web"
	"github.com/tasker-go/tasker/worker"
)

// withOrchestrator connects and hands fn an orchestrator handle (not running: for creating and
// reading tasks), mapping its typed errors to exit codes.
func withOrchestrator(ctx context.Context, env Env, dbURL string, fn func(o *orchestration.Orchestrator, pool *pgxpool.Pool) error) error {
	pool, err := connect(ctx, env, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	o, err := newOrchestrator(orchestration.DefaultConfig(), pool, logger(env, "warn"))
	if err != nil {
		return err
	}
	err = fn(o, pool)
	var dup *orchestration.DuplicateTaskError
	switch {
	case errors.Is(err, orchestration.ErrTaskNotFound), errors.Is(err, orchestration.ErrTemplateNotFound):
		return &notFoundError{err}
	case errors.As(err, &dup):
		de := &duplicateError{err: err}
		if qerr := pool.QueryRow(ctx, `SELECT task_uuid FROM tasker.tasks WHERE identity_hash = $1`, dup.IdentityHash).Scan(&de.existing); qerr != nil {
			logger(env, "warn").Warn("cannot read the existing task", "identity_hash", dup.IdentityHash, "error", qerr)
		}
		return de
	case errors.Is(err, orchestration.ErrInvalidRequest):
		return &usageError{err.Error()}
	}
	return err
}

func newOrchestrator(cfg orchestration.Config, pool *pgxpool.Pool, log *slog.Logger) (*orchestration.Orchestrator, error) {
	o, err := orchestration.New(cfg, pool, orchestration.WithLogger(log))
	if err != nil {
		return nil, &configError{err}
	}
	return o, nil
}

// runDev runs the orchestrator and a worker in one process (for development).
func runDev(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "dev", "dev [flags]")
	var rf runFlags
	rf.register(fs, true, true)
	cfg, err := loadRun(env, fs, &rf, args)
	if err != nil {
		return err
	}
	log := logger(env, rf.logLevel)
	stopTracing, err := setupTracing(ctx, cfg)
	if err != nil {
		return err
	}
	defer stopTracing()
	pool, err := openPool(ctx, cfg.Worker.DatabaseURL, max(cfg.Worker.MaxConns, cfg.Worker.Concurrency+16), dbSession(cfg, "tasker-dev"))
	if err != nil {
		return err
	}
	defer pool.Close()
	webAddr := ""
	if cfg.Web.Enabled {
		webAddr = cfg.Web.BindAddress
	}
	return runAllInOne(ctx, env, cfg.Worker, orchestrationConfig(cfg), pool, log, webAddr, nil)
}

// runAllInOne starts orchestrator and worker on pool (and the worker's health/metrics server on
// webAddr unless it is empty) and returns when ctx ends (or, when ready is non-nil, calls it once
// both are up and returns its result after stopping them).
func runAllInOne(ctx context.Context, env Env, wcfg worker.Config, ocfg orchestration.Config, pool *pgxpool.Pool, log *slog.Logger,
	webAddr string, ready func(ctx context.Context, o *orchestration.Orchestrator) error) error {
	w, err := startWorker(ctx, env, wcfg, pool, log)
	if err != nil {
		return err
	}
	o, err := newOrchestrator(ocfg, pool, log)
	if err != nil {
		return err
	}
	if err := o.EnsureQueues(ctx); err != nil {
		return err
	}
	if err := w.EnsureQueues(ctx); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if webAddr != "" {
		srv := web.NewWorker(web.ForWorker(w, pool, env.Registry, webAddr, env.Version))
		if err := srv.Start(); err != nil {
			return fmt.Errorf("web server on %s: %w", webAddr, err)
		}
		log.Info("serving health and metrics", "addr", srv.Addr())
		defer shutdownWeb(srv)
		go func() { <-runCtx.Done(); srv.BeginShutdown() }()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- o.Run(runCtx) }()
	go func() { defer wg.Done(); errs <- w.Run(runCtx) }()
	var result error
	if ready != nil {
		result = ready(runCtx, o)
		stop()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && result == nil {
			result = err
		}
	}
	return result
}

func runTask(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		return usagef("task: want submit | status | list | cancel")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "submit":
		return runTaskSubmit(ctx, env, args)
	case "status":
		return runTaskStatus(ctx, env, args)
	case "list":
		return runTaskList(ctx, env, args)
	case "cancel":
		return runTaskCancel(ctx, env, args)
	}
	return usagef("task: unknown subcommand %q (submit | status | list | cancel)", sub)
}

func runTaskSubmit(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "task submit", "task submit [--file request.json | -] [--namespace NS --name NAME --version V --context JSON] [--idempotency-key KEY] [--wait]")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	file := fs.String("file", "", "TaskRequest JSON file (tasker-core's shape); - reads standard input")
	ns := fs.String("namespace", "", "template namespace")
	name := fs.String("name", "", "template name")
	version := fs.String("version", "", "template version (default: the latest registered)")
	ctxJSON := fs.String("context", "", "task context JSON")
	idemKey := fs.String("idempotency-key", "", "identify the task by this key instead of its context: a second submit with the same key is a duplicate (exit 6), whatever its context")
	wait := fs.Bool("wait", false, "wait until the task finishes, showing its progress")
	timeout := fs.Duration("timeout", 10*time.Minute, "with --wait: give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req, err := buildRequest(env.Stdin, *file, *ns, *name, *version, *ctxJSON)
	if err != nil {
		return err
	}
	if *idemKey != "" {
		req.IdempotencyKey = idemKey
	}
	return withOrchestrator(ctx, env, *dbURL, func(o *orchestration.Orchestrator, pool *pgxpool.Pool) error {
		created, err := o.CreateTask(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, created.TaskUUID)
		if !*wait {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		st, err := watchTask(wctx, o, created.TaskUUID, env.Stderr)
		if err != nil {
			return err
		}
		if err := printStatus(ctx, env.Stdout, pool, st); err != nil {
			return err
		}
		if st.State != state.TaskComplete {
			return fmt.Errorf("%w: %s", errTaskFailed, st.State)
		}
		return nil
	})
}

// buildRequest reads the request file (- for stdin; at most
// protocol.MaxTaskRequestBytes, refused before decoding when longer) and applies the flags.
func buildRequest(stdin io.Reader, file, ns, name, version, ctxJSON string) (orchestration.TaskRequest, error) {
	var req orchestration.TaskRequest
	if file != "" {
		var err error
		if req, err = readRequestFile(stdin, file); err != nil {
			return req, err
		}
	}
	if ns != "" {
		req.Namespace = ns
	}
	if name != "" {
		req.Name = name
	}
	if version != "" {
		req.Version = version
	}
	if ctxJSON != "" {
		if !json.Valid([]byte(ctxJSON)) {
			return req, usagef("--context is not valid JSON")
		}
		req.Context = json.RawMessage(ctxJSON)
	}
	if req.Namespace == "" || req.Name == "" {
		return req, usagef("task submit: namespace and name are required (--namespace, --name or --file)")
	}
	if err := queue.ValidateNamespace(req.Namespace); err != nil {
		return req, usagef("task submit: %v", err)
	}
	if req.Initiator == "" {
		req.Initiator = "tasker-cli"
	}
	return req, nil
}

func readRequestFile(stdin io.Reader, file string) (orchestration.TaskRequest, error) {
	r := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return orchestration.TaskRequest{}, err
		}
		defer f.Close()
		r = f
	}
	req, err := orchestration.ReadTaskRequest(r)
	if errors.Is(err, orchestration.ErrInvalidRequest) {
		return req, usagef("task request %s: %v", file, err)
	}
	return req, err
}

// watchTask polls the task until it reaches a final or blocked state, writing one progress line
// whenever something changed: steps done/total, the task state and the steps that moved.
func watchTask(ctx context.Context, o *orchestration.Orchestrator, task uuid.UUID, w io.Writer) (*orchestration.TaskStatus, error) {
	last := map[string]state.StepState{}
	start := time.Now()
	lastKey := ""
	for {
		st, err := o.TaskStatus(ctx, task)
		if err != nil {
			return nil, err
		}
		done := 0
		var moved []string
		for _, s := range st.Steps {
			if s.State == state.StepComplete || s.State == state.StepResolvedManually {
				done++
			}
			if last[s.Name] != s.State {
				moved = append(moved, fmt.Sprintf("%s→%s", s.Name, s.State))
				last[s.Name] = s.State
			}
		}
		key := fmt.Sprintf("%s/%s  %d/%d steps complete  task %s", st.Namespace, st.Name, done, len(st.Steps), st.State)
		if key != lastKey || len(moved) > 0 {
			line := fmt.Sprintf("[%6.2fs] %s", time.Since(start).Seconds(), key)
			if len(moved) > 0 {
				line += "  (" + strings.Join(moved, ", ") + ")"
			}
			fmt.Fprintln(w, line)
			lastKey = key
		}
		if st.State.IsTerminal() || st.State == state.TaskBlockedByFailures {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("gave up waiting for task %s (state %s): %w", task, st.State, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func runTaskStatus(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "task status", "task status [--json] TASK_UUID")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print the full status as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	id, err := uuid.Parse(fs.Arg(0))
	if err != nil {
		return usagef("task status: want a task uuid, got %q", fs.Arg(0))
	}
	return withOrchestrator(ctx, env, *dbURL, func(o *orchestration.Orchestrator, pool *pgxpool.Pool) error {
		st, err := o.TaskStatus(ctx, id)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(env.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		return printStatus(ctx, env.Stdout, pool, st)
	})
}

// printStatus shows the task and its steps as a dependency tree with states and timings.
func printStatus(ctx context.Context, w io.Writer, pool *pgxpool.Pool, st *orchestration.TaskStatus) error {
	parents, err := stepEdges(ctx, pool, st.TaskUUID)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "task %s  %s/%s@%s  %s  (%s, %d/%d steps complete, %.0f%%)\n", st.TaskUUID, st.Namespace, st.Name, st.Version,
		st.State, st.Execution.ExecutionStatus, st.Execution.CompletedSteps, st.Execution.TotalSteps, st.Execution.CompletionPercentage)
	for _, line := range stepTree(st, parents) {
		fmt.Fprintln(w, line)
	}
	return nil
}

func runTaskList(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "task list", "task list [--limit N] [--state STATE]")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	limit := fs.Int("limit", 20, "how many tasks, newest first")
	stateFilter := fs.String("state", "", "only tasks in this state")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pool, err := connect(ctx, env, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `
		SELECT t.task_uuid, tn.name, nt.name, nt.version, COALESCE(tr.to_state, 'pending'), t.created_at,
		       (SELECT count(*) FROM tasker.workflow_steps ws WHERE ws.task_uuid = t.task_uuid),
		       (SELECT count(*) FROM tasker.workflow_steps ws WHERE ws.task_uuid = t.task_uuid AND ws.processed)
		  FROM tasker.tasks t
		  JOIN tasker.named_tasks nt USING (named_task_uuid)
		  JOIN tasker.task_namespaces tn USING (task_namespace_uuid)
		  LEFT JOIN tasker.task_transitions tr ON tr.task_uuid = t.task_uuid AND tr.most_recent
		 WHERE $2 = '' OR COALESCE(tr.to_state, 'pending') = $2
		 ORDER BY t.created_at DESC LIMIT $1`, *limit, *stateFilter)
	if err != nil {
		return err
	}
	defer rows.Close()
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tNAMESPACE/NAME\tVERSION\tSTATE\tSTEPS DONE\tCREATED")
	for rows.Next() {
		var id uuid.UUID
		var ns, name, version, st string
		var created time.Time
		var total, done int
		if err := rows.Scan(&id, &ns, &name, &version, &st, &created, &total, &done); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%d/%d\t%s\n", id, ns, name, version, st, done, total, created.Format(time.RFC3339))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return tw.Flush()
}

func runTaskCancel(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "task cancel", "task cancel TASK_UUID")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	id, err := uuid.Parse(fs.Arg(0))
	if err != nil {
		return usagef("task cancel: want a task uuid, got %q", fs.Arg(0))
	}
	return withOrchestrator(ctx, env, *dbURL, func(o *orchestration.Orchestrator, _ *pgxpool.Pool) error {
		n, err := o.Cancel(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "task %s cancelled (%d steps cancelled)\n", id, n)
		return nil
	})
}
