package integration

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/template"
)

const exampleTemplates = "../examples/templates"

func loadExamples(t *testing.T) map[string]*template.TaskTemplate {
	t.Helper()
	ts, err := template.LoadDir(exampleTemplates)
	if err != nil {
		t.Fatalf("load examples: %v", err)
	}
	out := map[string]*template.TaskTemplate{}
	for _, tt := range ts {
		out[tt.NamespaceName+"/"+tt.Name] = tt
	}
	return out
}

func register(t *testing.T, ctx context.Context, pool *pgxpool.Pool, tt *template.TaskTemplate) template.Registered {
	t.Helper()
	var reg template.Registered
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		reg, err = template.Register(ctx, tx, tt)
		return err
	})
	if err != nil {
		t.Fatalf("Register %s: %v", tt.Key(), err)
	}
	return reg
}

type rowCounts struct{ namespaces, tasks, steps, links int }

func countRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool) rowCounts {
	t.Helper()
	var c rowCounts
	err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM tasker.task_namespaces),
		(SELECT count(*) FROM tasker.named_tasks),
		(SELECT count(*) FROM tasker.named_steps),
		(SELECT count(*) FROM tasker.named_tasks_named_steps)`).Scan(&c.namespaces, &c.tasks, &c.steps, &c.links)
	if err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return c
}

func TestTemplateRegisterIsIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, pool := testdb.New(t)
	linear := loadExamples(t)["rust_e2e_linear/mathematical_sequence"]

	before := countRows(t, ctx, pool)
	first := register(t, ctx, pool, linear)
	afterFirst := countRows(t, ctx, pool)
	want := rowCounts{before.namespaces + 1, before.tasks + 1, before.steps + 4, before.links + 4}
	if afterFirst != want {
		t.Fatalf("after first Register: %+v, want %+v", afterFirst, want)
	}
	if !first.Created || len(first.NamedStepUUIDs) != 4 {
		t.Fatalf("first registration = %+v", first)
	}

	var updatedBefore time.Time
	if err := pool.QueryRow(ctx, `SELECT updated_at FROM tasker.named_tasks WHERE named_task_uuid = $1`, first.NamedTaskUUID).Scan(&updatedBefore); err != nil {
		t.Fatal(err)
	}
	second := register(t, ctx, pool, linear)
	if got := countRows(t, ctx, pool); got != afterFirst {
		t.Fatalf("second Register changed row counts: %+v -> %+v", afterFirst, got)
	}
	if second.Created || second.NamedTaskUUID != first.NamedTaskUUID || second.NamespaceUUID != first.NamespaceUUID ||
		!maps.Equal(second.NamedStepUUIDs, first.NamedStepUUIDs) {
		t.Fatalf("second registration %+v differs from first %+v", second, first)
	}
	var updatedAfter time.Time
	if err := pool.QueryRow(ctx, `SELECT updated_at FROM tasker.named_tasks WHERE named_task_uuid = $1`, first.NamedTaskUUID).Scan(&updatedAfter); err != nil {
		t.Fatal(err)
	}
	if updatedAfter.Before(updatedBefore) {
		t.Fatalf("updated_at went backwards: %v -> %v", updatedBefore, updatedAfter)
	}

	// The step links carry the template's retry defaults.
	rows, err := pool.Query(ctx, `
		SELECT ns.name, l.default_retryable, l.default_max_attempts
		FROM tasker.named_tasks_named_steps l JOIN tasker.named_steps ns USING (named_step_uuid)
		WHERE l.named_task_uuid = $1 ORDER BY ns.name`, first.NamedTaskUUID)
	if err != nil {
		t.Fatal(err)
	}
	type link struct {
		name      string
		retryable bool
		attempts  int
	}
	links, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (link, error) {
		var l link
		return l, r.Scan(&l.name, &l.retryable, &l.attempts)
	})
	if err != nil {
		t.Fatal(err)
	}
	wantLinks := []link{{"linear_step_1", true, 3}, {"linear_step_2", true, 3}, {"linear_step_3", true, 3}, {"linear_step_4", true, 3}}
	if !reflect.DeepEqual(links, wantLinks) {
		t.Fatalf("links = %+v, want %+v", links, wantLinks)
	}
}

func TestTemplateReRegisterUpdatesConfiguration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, pool := testdb.New(t)
	orig := loadExamples(t)["rust_e2e_linear/mathematical_sequence"]
	first := register(t, ctx, pool, orig)

	changed, err := orig.Clone()
	if err != nil {
		t.Fatal(err)
	}
	desc := "changed description"
	changed.Description = &desc
	changed.IdentityStrategy = template.IdentityAlwaysUnique
	changed.Steps = changed.Steps[:3] // linear_step_4 dropped
	changed.Steps[0].Retry.MaxAttempts = 7
	changed.Steps[0].Retry.Retryable = false
	second := register(t, ctx, pool, changed)
	if second.Created || second.NamedTaskUUID != first.NamedTaskUUID {
		t.Fatalf("re-registration created a new named task: %+v vs %+v", second, first)
	}
	var (
		gotDesc, strategy string
		steps             int
		maxAttempts       string
		links             int
		retryable         bool
		linkAttempts      int
	)
	err = pool.QueryRow(ctx, `
		SELECT nt.description, nt.identity_strategy::text, jsonb_array_length(nt.configuration->'steps'),
		       nt.configuration->'steps'->0->'retry'->>'max_attempts',
		       (SELECT count(*) FROM tasker.named_tasks_named_steps WHERE named_task_uuid = $1),
		       l.default_retryable, l.default_max_attempts
		FROM tasker.named_tasks nt
		JOIN tasker.named_tasks_named_steps l USING (named_task_uuid)
		JOIN tasker.named_steps s ON s.named_step_uuid = l.named_step_uuid AND s.name = 'linear_step_1'
		WHERE nt.named_task_uuid = $1`, first.NamedTaskUUID).
		Scan(&gotDesc, &strategy, &steps, &maxAttempts, &links, &retryable, &linkAttempts)
	if err != nil {
		t.Fatal(err)
	}
	if gotDesc != desc || strategy != "always_unique" || steps != 3 || maxAttempts != "7" || links != 3 || retryable || linkAttempts != 7 {
		t.Fatalf("after update: desc %q strategy %s steps %d max_attempts %s links %d retryable %v attempts %d",
			gotDesc, strategy, steps, maxAttempts, links, retryable, linkAttempts)
	}
	// Without identity_strategy in the template, the column keeps its value.
	register(t, ctx, pool, orig)
	if err := pool.QueryRow(ctx, `SELECT identity_strategy::text FROM tasker.named_tasks WHERE named_task_uuid = $1`, first.NamedTaskUUID).Scan(&strategy); err != nil {
		t.Fatal(err)
	}
	if strategy != "always_unique" {
		t.Fatalf("identity_strategy reset to %s by a template that does not set it", strategy)
	}
}

func TestTemplateConcurrentRegisterSucceeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url, _ := testdb.New(t)
	ex := loadExamples(t)
	// Same template from several "workers", plus two templates sharing the namespace
	// rust_e2e_retry, all at once.
	work := []*template.TaskTemplate{
		ex["rust_e2e_diamond/diamond_pattern"], ex["rust_e2e_diamond/diamond_pattern"],
		ex["rust_e2e_diamond/diamond_pattern"], ex["rust_e2e_diamond/diamond_pattern"],
		ex["rust_e2e_retry/retry_mechanics_test"], ex["rust_e2e_retry/retry_exhaustion_test"],
	}
	// One connection per registration, so every transaction is open at the same time.
	cfg, err := db.Config(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = int32(len(work) + 1)
	pool, err := db.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var (
		wg      sync.WaitGroup
		ready   sync.WaitGroup
		start   = make(chan struct{})
		results = make([]template.Registered, len(work))
		errs    = make([]error, len(work))
	)
	ready.Add(len(work))
	for i, tt := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := pool.Begin(ctx)
			ready.Done()
			if err != nil {
				errs[i] = err
				return
			}
			defer tx.Rollback(ctx)
			<-start // every transaction is open before any registration starts
			if results[i], errs[i] = template.Register(ctx, tx, tt); errs[i] != nil {
				return
			}
			errs[i] = tx.Commit(ctx)
		}()
	}
	ready.Wait()
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("registration %d (%s): %v", i, work[i].Key(), err)
		}
	}
	created := 0
	for i := range 4 {
		if results[i].NamedTaskUUID != results[0].NamedTaskUUID {
			t.Fatalf("concurrent registrations returned different named tasks: %v vs %v", results[i].NamedTaskUUID, results[0].NamedTaskUUID)
		}
		if results[i].Created {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d of 4 concurrent registrations claim to have created the row", created)
	}
	if results[4].NamespaceUUID != results[5].NamespaceUUID {
		t.Fatal("two templates of one namespace got different namespace rows")
	}
	var tasks, namespaces, steps int
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM tasker.named_tasks),
		(SELECT count(*) FROM tasker.task_namespaces WHERE name IN ('rust_e2e_diamond', 'rust_e2e_retry')),
		(SELECT count(*) FROM tasker.named_steps WHERE name IN ('diamond_start','diamond_branch_b','diamond_branch_c','diamond_end','fail_twice_then_succeed','always_fail'))`).
		Scan(&tasks, &namespaces, &steps); err != nil {
		t.Fatal(err)
	}
	if tasks != 3 || namespaces != 2 || steps != 6 {
		t.Fatalf("rows: named_tasks %d (want 3), namespaces %d (want 2), named_steps %d (want 6)", tasks, namespaces, steps)
	}
}

func TestTemplateLookupRoundTrips(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, pool := testdb.New(t)
	ex := loadExamples(t)
	ids := map[string]uuid.UUID{}
	for key, tt := range ex {
		ids[key] = register(t, ctx, pool, tt).NamedTaskUUID
	}
	for key, orig := range ex {
		got, id, err := template.Lookup(ctx, pool, orig.NamespaceName, orig.Name, orig.Version)
		if err != nil {
			t.Fatalf("Lookup %s: %v", key, err)
		}
		if id != ids[key] {
			t.Errorf("%s: Lookup uuid %v, Register uuid %v", key, id, ids[key])
		}
		want := *orig
		want.Source = got.Source
		if !reflect.DeepEqual(got, &want) {
			a, _ := json.Marshal(orig)
			b, _ := json.Marshal(got)
			t.Errorf("%s: Lookup returned a different template\n orig: %s\n  got: %s", key, a, b)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: looked-up template invalid: %v", key, err)
		}
	}

	_, _, err := template.Lookup(ctx, pool, "rust_e2e_linear", "mathematical_sequence", "9.9.9")
	if !errors.Is(err, template.ErrTemplateNotFound) {
		t.Fatalf("missing version: want ErrTemplateNotFound, got %v", err)
	}
	_, _, err = template.Lookup(ctx, pool, "no_such_namespace", "mathematical_sequence", "1.0.0")
	if !errors.Is(err, template.ErrTemplateNotFound) {
		t.Fatalf("missing namespace: want ErrTemplateNotFound, got %v", err)
	}

	// "latest" picks the most recently created version.
	v2, err := ex["rust_e2e_linear/mathematical_sequence"].Clone()
	if err != nil {
		t.Fatal(err)
	}
	v2.Version = "2.0.0"
	v2ID := register(t, ctx, pool, v2).NamedTaskUUID
	for _, version := range []string{"latest", ""} {
		got, id, err := template.Lookup(ctx, pool, "rust_e2e_linear", "mathematical_sequence", version)
		if err != nil {
			t.Fatalf("Lookup %q: %v", version, err)
		}
		if got.Version != "2.0.0" || id != v2ID {
			t.Fatalf("Lookup %q = version %s id %v, want 2.0.0 %v", version, got.Version, id, v2ID)
		}
	}

	// A named task written without a template (as other tools may do) is reported as such.
	if _, err := pool.Exec(ctx, `UPDATE tasker.named_tasks SET configuration = '{}' WHERE named_task_uuid = $1`, v2ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := template.Lookup(ctx, pool, "rust_e2e_linear", "mathematical_sequence", "2.0.0"); !errors.Is(err, template.ErrNoConfiguration) {
		t.Fatalf("empty configuration: want ErrNoConfiguration, got %v", err)
	}
}

func TestTemplateConfigurationJSONHasTaskerCoreKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, pool := testdb.New(t)
	ex := loadExamples(t)
	csv := ex["csv_processing_rust/csv_product_inventory_analyzer"]
	reg := register(t, ctx, pool, csv)

	var raw []byte
	var strategy string
	if err := pool.QueryRow(ctx, `SELECT configuration, identity_strategy::text FROM tasker.named_tasks WHERE named_task_uuid = $1`,
		reg.NamedTaskUUID).Scan(&raw, &strategy); err != nil {
		t.Fatal(err)
	}
	if strategy != "strict" {
		t.Errorf("identity_strategy = %s, want strict", strategy)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	keysOf := func(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
	wantTop := []string{"description", "domain_events", "environments", "input_schema", "lifecycle", "metadata",
		"name", "namespace_name", "steps", "system_dependencies", "version"}
	if got := keysOf(cfg); !reflect.DeepEqual(got, wantTop) {
		t.Fatalf("top-level keys = %v, want %v", got, wantTop)
	}
	steps := cfg["steps"].([]any)
	wantStep := []string{"batch_config", "dependencies", "description", "handler", "name", "publishes_events",
		"retry", "system_dependency", "timeout_seconds", "type"}
	for i, s := range steps {
		if got := keysOf(s.(map[string]any)); !reflect.DeepEqual(got, wantStep) {
			t.Errorf("steps[%d] keys = %v, want %v", i, got, wantStep)
		}
	}
	worker := steps[1].(map[string]any)
	checks := map[string]any{
		"type":                                        "batch_worker",
		"handler.callable":                            "batch_csv.process_csv_batch",
		"handler.method":                              nil,
		"retry.max_attempts":                          float64(3),
		"retry.backoff":                               "exponential",
		"retry.backoff_base_ms":                       float64(1000),
		"batch_config.failure_strategy":               "continue_on_failure",
		"batch_config.worker_template":                "process_csv_batch",
		"handler.initialization.operation":            "inventory_analysis",
		"dependencies":                                []any{"analyze_csv"},
		"publishes_events":                            []any{},
		"timeout_seconds":                             nil,
		"batch_config.batch_size":                     float64(200),
		"handler.resolver":                            nil,
		"system_dependency":                           nil,
		"batch_config.cursor_field":                   "row_number",
		"batch_config.parallelism":                    float64(5),
		"retry.retryable":                             true,
		"retry.max_backoff_ms":                        float64(30000),
		"handler.initialization.nonexistent_sentinel": missing{},
	}
	for path, want := range checks {
		if got := dig(worker, path); !reflect.DeepEqual(got, want) {
			t.Errorf("steps[1].%s = %#v, want %#v", path, got, want)
		}
	}
	if got := dig(cfg, "system_dependencies.primary"); got != "default" {
		t.Errorf("system_dependencies.primary = %v", got)
	}
	if cfg["lifecycle"] != nil || cfg["input_schema"] != nil {
		t.Errorf("absent lifecycle/input_schema should be null: %v %v", cfg["lifecycle"], cfg["input_schema"])
	}
	// Event declarations are readable from SQL the way workers read them.
	de := ex["domain_events_rust/domain_event_publishing"]
	reg = register(t, ctx, pool, de)
	var publisher, mode string
	if err := pool.QueryRow(ctx, `
		SELECT configuration->'steps'->1->'publishes_events'->0->>'publisher',
		       configuration->'steps'->1->'publishes_events'->0->>'delivery_mode'
		FROM tasker.named_tasks WHERE named_task_uuid = $1`, reg.NamedTaskUUID).Scan(&publisher, &mode); err != nil {
		t.Fatal(err)
	}
	if publisher != "PaymentEventPublisher" || mode != "durable" {
		t.Errorf("event declaration in JSON: publisher %q mode %q", publisher, mode)
	}
}

type missing struct{}

// dig follows a dotted path through decoded JSON; missing{} when a key is absent.
func dig(v any, path string) any {
	cur := v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return missing{}
		}
		if cur, ok = m[k]; !ok {
			return missing{}
		}
	}
	return cur
}
