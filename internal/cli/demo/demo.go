// Package demo is `tasker demo`: it starts PostgreSQL in Docker when no database is given, runs
// the example workflows end to end and prints their results. Only cmd/tasker registers it, so
// the worker and orchestrator binaries link no Docker client.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/db"
	exhandlers "github.com/tasker-go/tasker/examples/handlers"
	"github.com/tasker-go/tasker/internal/cli"
	"github.com/tasker-go/tasker/internal/pgcontainer"
	"github.com/tasker-go/tasker/migrations"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/worker"
)

// demoScenario is one example task the demo submits, what it should end as, and which step's
// result to show.
type demoScenario struct {
	label, namespace, name string
	context                string
	want                   state.TaskState
	show                   string // step whose result is printed
}

func demoScenarios(dataDir string) []demoScenario {
	csv, _ := json.Marshal(filepath.Join(dataDir, "products.csv"))
	order := `{"customer":{"id":12345,"name":"John Doe","email":"john.doe@example.com"},
		"items":[{"sku":"WIDGET-001","quantity":2,"price":29.99},{"sku":"GADGET-002","quantity":1,"price":149.99}],
		"payment":{"method":"credit_card","token":"tok_1234567890abcdef"},
		"shipping":{"method":"standard","address":{"street":"123 Main St","city":"Anytown","state":"CA","zip":"12345","country":"US"}}}`
	return []demoScenario{
		{"linear n=6", "rust_e2e_linear", "mathematical_sequence", `{"even_number":6}`, state.TaskComplete, "linear_step_4"},
		{"diamond n=6", "rust_e2e_diamond", "diamond_pattern", `{"even_number":6}`, state.TaskComplete, "diamond_end"},
		{"tree n=6", "rust_e2e_tree", "hierarchical_tree", `{"even_number":6}`, state.TaskComplete, "tree_final_convergence"},
		{"mixed DAG n=2", "rust_e2e_mixed_dag", "complex_dag", `{"even_number":2}`, state.TaskComplete, "dag_finalize"},
		{"order fulfillment", "rust_e2e_order_fulfillment", "business_workflow", order, state.TaskComplete, "validate_order"},
		{"approval $500", "conditional_approval_rust", "approval_routing", `{"amount":500,"requester":"john.doe","purpose":"Office supplies purchase"}`, state.TaskComplete, "finalize_approval"},
		{"approval $10000", "conditional_approval_rust", "approval_routing", `{"amount":10000,"requester":"bob.johnson","purpose":"Major infrastructure investment"}`, state.TaskComplete, "finalize_approval"},
		{"CSV batch 1000 rows", "csv_processing_rust", "csv_product_inventory_analyzer", `{"csv_file_path":` + string(csv) + `,"analysis_mode":"inventory"}`, state.TaskComplete, "aggregate_csv_results"},
		{"domain events", "domain_events_rust", "domain_event_publishing", `{"order_id":"` + uuid.Must(uuid.NewV7()).String() + `","customer_id":"cust-42","amount":99.5}`, state.TaskComplete, "domain_events_send_notification"},
		{"retry then succeed", "rust_e2e_retry", "retry_mechanics_test", `{}`, state.TaskComplete, "fail_twice_then_succeed"},
		{"permanent failure", "test_errors", "permanent_error_only", `{}`, state.TaskBlockedByFailures, "permanent_error_step"},
	}
}

// Command is `tasker demo`, for cli.Main.
func Command(env cli.Env) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "demo [--database-url URL] [--templates DIR]",
		Short: "Start Postgres if needed, run example workflows end to end, print results",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected argument(s) %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), env, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL; unset: start Postgres in Docker)")
	fs.StringVar(&o.templates, "templates", "examples/templates", "example template directory")
	cli.LogLevelVar(fs, &o.logLevel, "warn")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up after this long")
	return cmd
}

// options are the demo's flags.
type options struct {
	dbURL, templates, logLevel string
	timeout                    time.Duration
}

func run(ctx context.Context, env cli.Env, opts options) error {
	url := opts.dbURL
	if url == "" {
		url = env.Getenv("DATABASE_URL")
	}
	if url == "" {
		image := pgcontainer.Image()
		fmt.Fprintf(env.Stdout, "==> starting PostgreSQL in Docker (%s)\n", image)
		srv, err := pgcontainer.Start(ctx, image)
		if err != nil {
			return fmt.Errorf("%w (or set DATABASE_URL to use an existing server)", err)
		}
		defer srv.Stop()
		url = srv.URL
	}
	dataDir := exhandlers.DataDir()
	if dataDir == "" {
		return &cli.ConfigError{Err: errors.New("examples/data not found: run the demo from a source checkout")}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	log := cli.Logger(env, opts.logLevel)
	pool, err := cli.OpenPool(ctx, url, 40, db.WithAppName("tasker-demo"))
	if err != nil {
		return err
	}
	defer pool.Close()
	fmt.Fprintln(env.Stdout, "==> migrating (tasker schema + PGMQ)")
	if err := migrations.Up(ctx, pool, log); err != nil {
		return err
	}
	wcfg := worker.DefaultConfig()
	wcfg.PollInterval = 200 * time.Millisecond
	ocfg := orchestration.Config{ReadinessInterval: 200 * time.Millisecond, PollInterval: 200 * time.Millisecond}.WithDefaults()
	// Retries wait 1s, 2s, ... instead of tasker-core's production base: the demo should be short.
	ocfg.Backoff.Max = 4 * time.Second
	fmt.Fprintf(env.Stdout, "==> registering templates from %s, starting orchestrator + worker\n", opts.templates)
	var results []demoResult
	err = cli.RunAllInOne(ctx, env, pool, log, cli.AllInOne{
		Worker: wcfg, Templates: opts.templates, Orchestration: ocfg, APIAddr: "127.0.0.1:0",
		Ready: func(ctx context.Context, o *orchestration.Orchestrator) error {
			results = runScenarios(ctx, env.Stdout, o, demoScenarios(dataDir))
			return nil
		},
	})
	if err != nil {
		return err
	}
	return printDemoResults(env.Stdout, results)
}

type demoResult struct {
	sc      demoScenario
	task    uuid.UUID
	status  *orchestration.TaskStatus
	elapsed time.Duration
	err     error
}

func runScenarios(ctx context.Context, out io.Writer, o *orchestration.Orchestrator, scs []demoScenario) []demoResult {
	results := make([]demoResult, len(scs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	fmt.Fprintf(out, "==> submitting %d tasks\n", len(scs))
	for i, sc := range scs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.sc = sc
			key := uuid.Must(uuid.NewV7()).String() // a fresh identity per run (the context may repeat)
			start := time.Now()
			created, err := o.CreateTask(ctx, orchestration.TaskRequest{
				Namespace: sc.namespace, Name: sc.name, Version: "1.0.0", Context: json.RawMessage(sc.context),
				Initiator: "tasker-demo", SourceSystem: "tasker-go", Reason: "demo: " + sc.label, IdempotencyKey: &key,
			})
			if err != nil {
				r.err = err
				return
			}
			r.task = created.TaskUUID
			w := &prefixWriter{w: out, mu: &mu, prefix: fmt.Sprintf("%-20s ", sc.label)}
			r.status, r.err = cli.WatchTask(ctx, o, created.TaskUUID, w)
			r.elapsed = time.Since(start)
		}()
	}
	wg.Wait()
	return results
}

func printDemoResults(out io.Writer, results []demoResult) error {
	fmt.Fprintln(out, "\n==> results")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tTASK STATE\tSTEPS\tTIME\tSHOWN STEP\tRESULT")
	var failed []string
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\terror\t\t\t\t%v\n", r.sc.label, r.err)
			failed = append(failed, r.sc.label)
			continue
		}
		st := r.status
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.sc.label, st.State, len(st.Steps), r.elapsed.Round(time.Millisecond),
			r.sc.show, stepResultSummary(st, r.sc.show))
		if st.State != r.sc.want {
			failed = append(failed, fmt.Sprintf("%s (%s, want %s)", r.sc.label, st.State, r.sc.want))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", cli.ErrTaskFailed, strings.Join(failed, "; "))
	}
	fmt.Fprintf(out, "\nall %d scenarios ended as expected (the permanent failure is meant to block)\n", len(results))
	return nil
}

// stepResultSummary is the step's result value, or its error message, in one line.
func stepResultSummary(st *orchestration.TaskStatus, step string) string {
	for _, s := range st.Steps {
		if s.Name != step {
			continue
		}
		var r struct {
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
			Metadata struct {
				ErrorCode *string `json:"error_code"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(s.Results, &r); err != nil {
			return "-"
		}
		if r.Error != nil {
			code := ""
			if r.Metadata.ErrorCode != nil {
				code = *r.Metadata.ErrorCode + ": "
			}
			return fmt.Sprintf("error after %d attempt(s): %s%s", s.Attempts, code, r.Error.Message)
		}
		text := string(r.Result)
		if len(text) > 110 {
			text = text[:110] + "…"
		}
		return fmt.Sprintf("%s (attempts %d)", text, s.Attempts)
	}
	return "-"
}

// prefixWriter prefixes each line and serializes writers.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(p.w, p.prefix+line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
