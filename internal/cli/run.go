package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/config"
	"github.com/tasker-go/tasker/console"
	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/domainevents"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/tracing"
	"github.com/tasker-go/tasker/web"
	"github.com/tasker-go/tasker/worker"
)

// runFlags are the flags of the long-running commands (worker, orchestrator, dev). Flags win
// over the environment, which wins over the TOML file, which wins over the defaults.
type runFlags struct {
	fs                                                                     *pflag.FlagSet
	configPath, configDir, dbURL, templates, namespaces, logLevel, webAddr string
	concurrency                                                            int
	noWeb                                                                  bool
	readiness, poll                                                        time.Duration
}

func (f *runFlags) register(fs *pflag.FlagSet, withWorker, withOrch bool) {
	f.fs = fs
	fs.StringVar(&f.configPath, "config", "", "TOML configuration file (default $TASKER_CONFIG_PATH)")
	fs.StringVar(&f.configDir, "config-dir", "", "tasker-core configuration directory: base/*.toml, then environments/$TASKER_ENV/*.toml (default $TASKER_CONFIG_DIR)")
	fs.StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	LogLevelVar(fs, &f.logLevel, "info")
	fs.StringVar(&f.webAddr, "web-addr", "", "health/metrics HTTP address (default $TASKER_WEB_BIND_ADDRESS, 0.0.0.0:8081 for workers, 0.0.0.0:8080 for orchestrators)")
	fs.BoolVar(&f.noWeb, "no-web", false, "do not serve health and metrics endpoints")
	if withWorker {
		fs.StringVar(&f.templates, "templates", "", "task template directory registered at start (default $TASKER_TEMPLATE_PATH)")
		fs.StringVar(&f.namespaces, "namespaces", "", "comma-separated namespaces to consume (default $TASKER_NAMESPACES, else the templates' namespaces)")
		fs.IntVar(&f.concurrency, "concurrency", 0, "handlers running at once (default $TASKER_CONCURRENCY, else 10)")
	}
	if withOrch {
		fs.DurationVar(&f.readiness, "readiness-interval", 0, "period of the readiness sweep (retries, waiting tasks); default 1s")
		fs.DurationVar(&f.poll, "result-poll-interval", 0, "fallback poll of orchestration_step_results; default 1s")
	}
}

// load reads the configuration with the flags the command line set applied last.
func (f *runFlags) load(env Env) (config.Config, error) {
	set := func(name string) bool { return f.fs != nil && f.fs.Changed(name) }
	cfg, err := config.Load(config.Options{Path: f.configPath, Dir: f.configDir, Getenv: env.Getenv,
		Logger: Logger(env, f.logLevel), Apply: func(c *config.Config) error {
			if set("database-url") {
				c.Database.URL = f.dbURL
			}
			if set("templates") {
				c.TemplatePath = f.templates
			}
			if set("namespaces") {
				c.Worker.Namespaces = splitComma(f.namespaces)
			}
			if set("concurrency") {
				c.Worker.Concurrency = f.concurrency
			}
			if set("web-addr") {
				c.WorkerWeb.BindAddress, c.OrchestrationWeb.BindAddress = f.webAddr, f.webAddr
			}
			if f.noWeb {
				c.WorkerWeb.Enabled, c.OrchestrationWeb.Enabled = false, false
			}
			if set("readiness-interval") {
				c.Orchestration.ReadinessInterval = f.readiness
			}
			if set("result-poll-interval") {
				c.Orchestration.PollInterval = f.poll
			}
			return nil
		}})
	if err != nil {
		return cfg, &ConfigError{err}
	}
	return cfg, nil
}

// startWorker registers templates, fills in namespaces, wires domain events and returns a
// worker ready to Run.
func startWorker(ctx context.Context, env Env, cfg worker.Config, templates string, pool *pgxpool.Pool, log *slog.Logger, opts ...worker.Option) (*worker.Worker, error) {
	if templates != "" {
		tmpls, nss, err := worker.LoadAndRegisterTemplates(ctx, pool, templates)
		if err != nil {
			return nil, &ConfigError{err}
		}
		log.Info("templates registered", "count", len(tmpls), "namespaces", nss, "path", templates)
		if len(cfg.Namespaces) == 0 {
			cfg.Namespaces = nss
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, &ConfigError{err}
	}
	pubs := env.Publishers
	if pubs == nil {
		pubs = domainevents.NewPublisherRegistry(log)
	}
	subs := env.Subscribers
	if subs == nil {
		subs = domainevents.NewSubscriberRegistry()
	}
	events := domainevents.NewStepPublisher(domainevents.StepPublisherConfig{
		Publishers: pubs,
		Bus:        domainevents.NewBus(subs, domainevents.BusConfig{Logger: log}),
		Queue:      queue.NewClient(pool),
		Logger:     log,
	})
	all := append([]worker.Option{worker.WithLogger(log), worker.WithEvents(events)}, opts...)
	w, err := worker.New(cfg, pool, env.Registry, all...)
	if err != nil {
		return nil, &ConfigError{err}
	}
	return w, nil
}

// OpenPool connects to url with a pool of maxConns connections (0: pgxpool's default) and the
// session settings of session.
func OpenPool(ctx context.Context, url string, maxConns int, session db.Option) (*pgxpool.Pool, error) {
	pc, err := db.Config(url, session)
	if err != nil {
		return nil, &ConfigError{err}
	}
	if maxConns > 0 {
		pc.MaxConns = int32(maxConns)
	}
	return db.ConnectConfig(ctx, pc)
}

func newWorkerCmd(env Env) *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker (handlers of this binary)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWorker(cmd.Context(), env, &rf)
		},
	}
	rf.register(cmd.Flags(), true, false)
	return cmd
}

// process is what a long-running command sets up first: its configuration, logger, tracing and
// database pool.
type process struct {
	cfg  config.Config
	log  *slog.Logger
	pool *pgxpool.Pool
	stop func() // closes the pool, then flushes tracing
}

// startProcess loads the configuration, starts tracing and opens a pool named app of at least
// minConns(cfg) connections (more when common.database.pool.max_connections asks for more).
func startProcess(ctx context.Context, env Env, rf *runFlags, app string, minConns func(config.Config) int) (*process, error) {
	cfg, err := rf.load(env)
	if err != nil {
		return nil, err
	}
	log := Logger(env, rf.logLevel)
	stopTracing, err := setupTracing(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pool, err := OpenPool(ctx, cfg.Database.URL, max(cfg.Database.MaxConns, minConns(cfg)), dbSession(cfg, app))
	if err != nil {
		stopTracing()
		return nil, err
	}
	return &process{cfg: cfg, log: log, pool: pool, stop: func() { pool.Close(); stopTracing() }}, nil
}

func runWorker(ctx context.Context, env Env, rf *runFlags) error {
	p, err := startProcess(ctx, env, rf, "tasker-worker", func(c config.Config) int { return c.Worker.Concurrency + 4 })
	if err != nil {
		return err
	}
	defer p.stop()
	cfg, log, pool, wc := p.cfg, p.log, p.pool, p.cfg.Worker
	w, err := startWorker(ctx, env, wc, cfg.TemplatePath, pool, log)
	if err != nil {
		return err
	}
	stopStatus := logStatusOnSIGUSR1(ctx, log, func() any { return w.Metrics().Snapshot() })
	defer stopStatus()
	if cfg.WorkerWeb.Enabled {
		opts := web.ForWorker(w, pool, env.Registry, cfg.WorkerWeb.BindAddress, env.Version)
		if opts.TemplateAccess, err = api.NewWorkerTemplateAccess(cfg.WorkerAuth, log); err != nil {
			return err
		}
		srv := web.NewWorker(opts)
		if err := srv.Start(); err != nil {
			return fmt.Errorf("web server on %s: %w", cfg.WorkerWeb.BindAddress, err)
		}
		log.Info("serving health and metrics", "addr", srv.Addr())
		defer shutdownWeb(srv)
		go func() { <-ctx.Done(); srv.BeginShutdown() }()
	}
	return w.Run(ctx)
}

func newOrchestratorCmd(env Env) *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "orchestrator",
		Short: "Run the orchestration core",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOrchestrator(cmd.Context(), env, &rf)
		},
	}
	rf.register(cmd.Flags(), false, true)
	return cmd
}

func runOrchestrator(ctx context.Context, env Env, rf *runFlags) error {
	p, err := startProcess(ctx, env, rf, "tasker-orchestrator", func(config.Config) int { return 16 })
	if err != nil {
		return err
	}
	defer p.stop()
	cfg, log, pool := p.cfg, p.log, p.pool
	o, err := newOrchestrator(cfg.Orchestration, pool, log)
	if err != nil {
		return err
	}
	if cfg.OrchestrationWeb.Enabled {
		info := api.ConfigInfo{Environment: env.Getenv("TASKER_ENV"), Version: ResolveVersion(env.Version)}
		srv, err := orchestratorWeb(o, pool, cfg.OrchestrationWeb.BindAddress, cfg.OrchestrationAuth, info, log)
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return fmt.Errorf("web server on %s: %w", cfg.OrchestrationWeb.BindAddress, err)
		}
		log.Info("serving the orchestration API, health and metrics", "addr", srv.Addr())
		defer shutdownWeb(srv)
		go func() { <-ctx.Done(); srv.BeginShutdown() }()
	}
	return o.Run(ctx)
}

// orchestratorWeb serves, for an orchestrator, tasker-core's orchestration REST API (/v1 tasks,
// workflow steps, DLQ, analytics, /config, /api-docs/openapi.json; package api, behind auth),
// /v1/templates, /health, /health/ready (database and orchestration queues) and /metrics (queue
// depths). It fails when the auth configuration is unusable.
func orchestratorWeb(o *orchestration.Orchestrator, pool *pgxpool.Pool, addr string, auth config.WebAuth, info api.ConfigInfo, log *slog.Logger) (*web.Server, error) {
	api.WarnIfUnprotected(addr, auth, log)
	v1, err := api.New(o, pool, api.Options{Logger: log, Auth: auth, ExtraRoutes: orchestratorWebRoutes, Config: info})
	if err != nil {
		return nil, err
	}
	q := queue.NewClient(pool)
	orchQueues := []string{queue.StepResultsQueue, queue.TaskRequestsQueue, queue.TaskFinalizationsQueue}
	return web.New(web.Config{
		Addr:            addr,
		IDKey:           "processor_uuid",
		InstanceID:      o.Config().ProcessorUUID.String(),
		NotReadyMessage: "Orchestrator is not ready to process results",
		Checks: []web.Check{web.DatabaseCheck(web.SelectOne(pool)), web.QueuesCheck(q, orchQueues),
			web.ReadsCheck(o, 2*o.Config().DBTimeout+o.Config().PollInterval, nil)},
		Collectors: []prometheus.Collector{web.ReadAgeCollector("tasker_orchestrator_queue_last_read_age_seconds", o), web.NewOrchestratorCollector(web.ForOrchestrator(o, pool, q))},
		Templates:  web.DBTemplates{DB: pool},
		Routes:     console.Routes(v1.Mount),
		Logger:     log,

		// templates:read; handler initialization only for callers allowed worker:templates_read
		TemplateAccess: v1,
	}), nil
}

// orchestratorWebRoutes documents, in the API's OpenAPI document, the routes package web serves
// next to the API.
var orchestratorWebRoutes = []api.Route{
	{Method: "GET", Path: "/health", Tag: "health", Summary: "Basic health check",
		Responses: []api.Response{{Status: 200, Description: "Healthy"}}},
	{Method: "GET", Path: "/health/live", Tag: "health", Summary: "Liveness probe",
		Responses: []api.Response{{Status: 200, Description: "Alive"}}},
	{Method: "GET", Path: "/health/ready", Tag: "health", Summary: "Readiness probe (database, queues, result reads)",
		Responses: []api.Response{{Status: 200, Description: "Ready"}, {Status: 503, Description: "Not ready"}}},
	{Method: "GET", Path: "/health/detailed", Tag: "health", Summary: "Detailed health with every check",
		Responses: []api.Response{{Status: 200, Description: "Healthy"}, {Status: 503, Description: "Unhealthy"}}},
	{Method: "GET", Path: "/metrics", Tag: "health", Summary: "Prometheus metrics",
		Responses: []api.Response{{Status: 200, Description: "Prometheus text exposition"}}},
	{Method: "GET", Path: "/v1/templates", Resource: "templates", Action: "list", Tag: "templates", Summary: "Registered task templates by namespace",
		Query:     []api.Param{{Name: "namespace", Type: "string", Description: "Only this namespace"}},
		Responses: []api.Response{{Status: 200, Description: "Template list"}}},
	{Method: "GET", Path: "/v1/templates/{namespace}/{name}/{version}", Resource: "templates", Action: "read", Tag: "templates", Summary: "One task template",
		Responses: []api.Response{{Status: 200, Description: "Template details"}, {Status: 404, Description: "Template not found"}}},
}

func shutdownWeb(srv *web.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

func setupTracing(ctx context.Context, cfg config.Config) (func(), error) {
	shutdown, err := tracing.Setup(ctx, tracing.Config{Enabled: cfg.Telemetry.Enabled, ServiceName: cfg.Telemetry.ServiceName,
		Exporter: cfg.Telemetry.Exporter, Endpoint: cfg.Telemetry.Endpoint})
	if err != nil {
		return nil, &ConfigError{err}
	}
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(c)
	}, nil
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

// dbSession is the connection tuning of a process named app under cfg (0 in the file means
// "the server's own setting").
func dbSession(cfg config.Config, app string) db.Option {
	unset := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	return db.WithSession(db.Session{
		AppName:          app,
		StatementTimeout: unset(cfg.Database.StatementTimeout),
		LockTimeout:      unset(cfg.Database.LockTimeout),
	})
}
