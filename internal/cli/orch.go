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
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/client"
	"github.com/tasker-go/tasker/config"
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
	o, err := newOrchestrator(orchestration.DefaultConfig(), pool, Logger(env, "warn"))
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
			Logger(env, "warn").Warn("cannot read the existing task", "identity_hash", dup.IdentityHash, "error", qerr)
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
		return nil, &ConfigError{err}
	}
	return o, nil
}

func newDevCmd(env Env) *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run orchestrator + worker in one process",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), env, &rf)
		},
	}
	rf.register(cmd.Flags(), true, true)
	return cmd
}

// runDev runs the orchestrator and a worker in one process (for development).
func runDev(ctx context.Context, env Env, rf *runFlags) error {
	p, err := startProcess(ctx, env, rf, "tasker-dev", func(c config.Config) int { return c.Worker.Concurrency + 16 })
	if err != nil {
		return err
	}
	defer p.stop()
	cfg, log, pool := p.cfg, p.log, p.pool
	aio := AllInOne{Worker: cfg.Worker, Templates: cfg.TemplatePath, Orchestration: cfg.Orchestration}
	if cfg.OrchestrationWeb.Enabled {
		aio.APIAddr, aio.APIAuth = cfg.OrchestrationWeb.BindAddress, cfg.OrchestrationAuth
	}
	if cfg.WorkerWeb.Enabled && cfg.WorkerWeb.BindAddress != aio.APIAddr {
		// One address for both (--web-addr): the orchestrator's server, which has the API too.
		aio.WebAddr = cfg.WorkerWeb.BindAddress
	}
	return RunAllInOne(ctx, env, pool, log, aio)
}

// AllInOne is what RunAllInOne starts.
type AllInOne struct {
	Worker        worker.Config
	Templates     string // template directory registered before the worker starts; "" for none
	Orchestration orchestration.Config
	// WebAddr is where the worker's health/metrics server listens; "" serves none.
	WebAddr string
	// APIAddr is where the orchestrator's web server (health, metrics, the /v1 REST API)
	// listens, with APIAuth; "" serves none. Its address is printed once it listens.
	APIAddr string
	APIAuth config.WebAuth
	// Ready, when set, is called once both are up; RunAllInOne then stops them and returns its
	// result. Unset, RunAllInOne returns when ctx ends.
	Ready func(ctx context.Context, o *orchestration.Orchestrator) error
}

// RunAllInOne runs an orchestrator and a worker on pool (see AllInOne).
func RunAllInOne(ctx context.Context, env Env, pool *pgxpool.Pool, log *slog.Logger, a AllInOne) error {
	w, err := startWorker(ctx, env, a.Worker, a.Templates, pool, log)
	if err != nil {
		return err
	}
	o, err := newOrchestrator(a.Orchestration, pool, log)
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
	if a.WebAddr != "" {
		srv := web.NewWorker(web.ForWorker(w, pool, env.Registry, a.WebAddr, env.Version))
		if err := srv.Start(); err != nil {
			return fmt.Errorf("web server on %s: %w", a.WebAddr, err)
		}
		log.Info("serving health and metrics", "addr", srv.Addr())
		defer shutdownWeb(srv)
		go func() { <-runCtx.Done(); srv.BeginShutdown() }()
	}
	if a.APIAddr != "" {
		srv, err := orchestratorWeb(o, pool, a.APIAddr, a.APIAuth, api.ConfigInfo{Environment: env.Getenv("TASKER_ENV"), Version: ResolveVersion(env.Version)}, log)
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return fmt.Errorf("web server on %s: %w", a.APIAddr, err)
		}
		fmt.Fprintf(env.Stdout, "==> web console at http://%s/console/ ; REST API at http://%s/v1/tasks (OpenAPI: %s; health: /health, metrics: /metrics)\n",
			srv.Addr(), srv.Addr(), api.OpenAPIPath)
		defer shutdownWeb(srv)
		go func() { <-runCtx.Done(); srv.BeginShutdown() }()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- o.Run(runCtx) }()
	go func() { defer wg.Done(); errs <- w.Run(runCtx) }()
	var result error
	if a.Ready != nil {
		result = a.Ready(runCtx, o)
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

func newTaskCmd(env Env) *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Submit | status | list | cancel | retry tasks",
		Long: "Submit | status | list | cancel | retry tasks, in the database (--database-url, DATABASE_URL) or,\n" +
			"with --url or TASKER_API_URL, through an orchestrator's REST API (same output either way).",
	}
	f.registerPersistent(cmd.PersistentFlags())
	cmd.AddCommand(newTaskSubmitCmd(env, f), newTaskStatusCmd(env, f), newTaskListCmd(env, f), newTaskCancelCmd(env, f),
		newTaskRetryCmd(env, f))
	return cmd
}

// submitOptions are task submit's flags.
type submitOptions struct {
	dbURL, file, namespace, name, version, context, idempotencyKey string
	wait, ndjson                                                   bool
	timeout                                                        time.Duration
}

func newTaskSubmitCmd(env Env, f *apiFlags) *cobra.Command {
	var o submitOptions
	cmd := &cobra.Command{
		Use:   "submit [--file request.json | -] [--namespace NS --name NAME --version V --context JSON] [--idempotency-key KEY] [--wait] | --file requests.ndjson | --ndjson [--file FILE | -]",
		Short: "Create a task; prints its uuid (or many, one request per NDJSON line)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.isRemote(env) {
				return runRemoteSubmit(cmd.Context(), env, f, o)
			}
			return runTaskSubmit(cmd.Context(), env, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	fs.StringVar(&o.file, "file", "", "TaskRequest JSON file (tasker-core's shape); - reads standard input; a .ndjson file holds one request per line")
	fs.BoolVar(&o.ndjson, "ndjson", false, "read one TaskRequest per line (from --file, else standard input) and print one JSON result line per request; exit with the worst request's code")
	fs.StringVar(&o.namespace, "namespace", "", "template namespace")
	fs.StringVar(&o.name, "name", "", "template name")
	fs.StringVar(&o.version, "version", "", "template version (default: the latest registered)")
	fs.StringVar(&o.context, "context", "", "task context JSON")
	fs.StringVar(&o.idempotencyKey, "idempotency-key", "", "identify the task by this key instead of its context: a second submit with the same key is a duplicate (exit 6), whatever its context")
	fs.BoolVar(&o.wait, "wait", false, "wait until the task finishes, showing its progress")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "with --wait: give up after this long")
	return cmd
}

func runTaskSubmit(ctx context.Context, env Env, opts submitOptions) error {
	if opts.isNDJSON() {
		return runBulkSubmit(ctx, env, opts)
	}
	req, err := buildRequest(env.Stdin, opts.file, opts.namespace, opts.name, opts.version, opts.context)
	if err != nil {
		return err
	}
	if opts.idempotencyKey != "" {
		key := opts.idempotencyKey
		req.IdempotencyKey = &key
	}
	return withOrchestrator(ctx, env, opts.dbURL, func(o *orchestration.Orchestrator, pool *pgxpool.Pool) error {
		created, err := o.CreateTask(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, created.TaskUUID)
		if !opts.wait {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, opts.timeout)
		defer cancel()
		st, err := WatchTask(wctx, o, created.TaskUUID, env.Stderr)
		if err != nil {
			return err
		}
		if err := printStatus(ctx, env.Stdout, pool, st); err != nil {
			return err
		}
		if st.State != state.TaskComplete {
			return fmt.Errorf("%w: %s", ErrTaskFailed, st.State)
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
	err := checkRequest(&req)
	return req, err
}

// checkRequest requires a namespace and name, checks the namespace, and defaults the initiator.
func checkRequest(req *orchestration.TaskRequest) error {
	if req.Namespace == "" || req.Name == "" {
		return usagef("namespace and name are required (--namespace, --name or --file)")
	}
	if err := queue.ValidateNamespace(req.Namespace); err != nil {
		return &usageError{err.Error()}
	}
	if req.Initiator == "" {
		req.Initiator = "tasker-cli"
	}
	return nil
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

// WatchTask polls the task until it reaches a final or blocked state, writing one progress line
// whenever something changed: steps done/total, the task state and the steps that moved.
func WatchTask(ctx context.Context, o *orchestration.Orchestrator, task uuid.UUID, w io.Writer) (*orchestration.TaskStatus, error) {
	return watchTask(ctx, func() (*orchestration.TaskStatus, error) { return o.TaskStatus(ctx, task) }, task, w)
}

// watchTask is WatchTask reading the task with read.
func watchTask(ctx context.Context, read func() (*orchestration.TaskStatus, error), task uuid.UUID, w io.Writer) (*orchestration.TaskStatus, error) {
	last := map[string]state.StepState{}
	start := time.Now()
	lastKey := ""
	for {
		st, err := read()
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

func newTaskStatusCmd(env Env, f *apiFlags) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "status [--json | -o json|table] TASK_UUID",
		Short: "Show a task and its steps as a dependency tree",
		Long: "Show a task and its steps as a dependency tree. -o json (or --json) prints the full status:\n" +
			"from the database, the task with its steps' retry outlook; with --url, the REST API's\n" +
			"TaskResponse (GET /v1/tasks/{uuid}).",
		Args: oneArg("task uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseTaskUUID(args[0])
			if err != nil {
				return err
			}
			return runTaskStatus(cmd.Context(), env, f, id, out)
		},
	}
	cmd.Flags().StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	out.register(cmd.Flags(), true)
	return cmd
}

func parseTaskUUID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, usagef("want a task uuid, got %q", s)
	}
	return id, nil
}

func runTaskStatus(ctx context.Context, env Env, f *apiFlags, id uuid.UUID, out output) error {
	if f.isRemote(env) {
		return withAPI(ctx, env, f, func(c *client.Client) error {
			if out.isJSON() {
				_, raw, err := c.Task(ctx, id.String())
				if err != nil {
					return taskNotFound(err, id)
				}
				return printJSON(env, raw)
			}
			st, parents, err := remoteStatus(ctx, c, id)
			if err != nil {
				return err
			}
			printStatusTree(env.Stdout, st, parents)
			return nil
		})
	}
	return withOrchestrator(ctx, env, f.dbURL, func(o *orchestration.Orchestrator, pool *pgxpool.Pool) error {
		st, err := o.TaskStatus(ctx, id)
		if err != nil {
			return err
		}
		if out.isJSON() {
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
	printStatusTree(w, st, parents)
	return nil
}

// printStatusTree is task status's text: one header line, then the step tree.
func printStatusTree(w io.Writer, st *orchestration.TaskStatus, parents map[uuid.UUID][]uuid.UUID) {
	fmt.Fprintf(w, "task %s  %s/%s@%s  %s  (%s, %d/%d steps complete, %.0f%%)\n", st.TaskUUID, st.Namespace, st.Name, st.Version,
		st.State, st.Execution.ExecutionStatus, st.Execution.CompletedSteps, st.Execution.TotalSteps, st.Execution.CompletionPercentage)
	for _, line := range stepTree(st, parents) {
		fmt.Fprintln(w, line)
	}
}

func newTaskListCmd(env Env, f *apiFlags) *cobra.Command {
	var stateFilter string
	var limit int
	var out output
	cmd := &cobra.Command{
		Use:   "list [--limit N] [--state STATE]",
		Short: "List tasks, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit: want a number of tasks, got %d", limit)
			}
			return runTaskList(cmd.Context(), env, f, limit, stateFilter, out)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	out.register(fs, false)
	fs.IntVar(&limit, "limit", 20, "how many tasks, newest first")
	var states []string
	for _, s := range state.TaskStates() {
		states = append(states, string(s))
	}
	fs.Var(&enumValue{value: &stateFilter, allowed: states, canon: func(v string) string {
		if s, err := state.ParseTaskState(v); err == nil {
			return string(s)
		}
		return v
	}}, "state", "only tasks in this state ("+strings.Join(states, "|")+")")
	return cmd
}

func newTaskCancelCmd(env Env, f *apiFlags) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "cancel TASK_UUID",
		Short: "Cancel a task and its unfinished steps",
		Args:  oneArg("task uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseTaskUUID(args[0])
			if err != nil {
				return err
			}
			return runTaskCancel(cmd.Context(), env, f, id, out)
		},
	}
	cmd.Flags().StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	out.register(cmd.Flags(), false)
	return cmd
}
