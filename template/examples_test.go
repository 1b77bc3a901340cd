package template

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const examplesDir = "../examples/templates"

func TestExamplesLoadStrictlyAndRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example templates found: %v", err)
	}
	ts, err := LoadDir(examplesDir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if len(ts) != len(files) {
		t.Fatalf("loaded %d templates from %d files", len(ts), len(files))
	}
	for _, tt := range ts {
		b, err := json.Marshal(tt)
		if err != nil {
			t.Fatalf("%s: marshal: %v", tt.Source, err)
		}
		back, err := ParseJSON(b, tt.Source)
		if err != nil {
			t.Fatalf("%s: ParseJSON: %v", tt.Source, err)
		}
		if !reflect.DeepEqual(tt, back) {
			t.Errorf("%s: JSON round trip changed the template", tt.Source)
		}
		for _, s := range tt.Steps {
			if !strings.Contains(s.Handler.Callable, ".") {
				t.Errorf("%s: step %s callable %q is not a Go handler key", tt.Source, s.Name, s.Handler.Callable)
			}
		}
	}
}

func TestExampleScenarioShapes(t *testing.T) {
	ts, err := LoadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]*TaskTemplate{}
	for _, tt := range ts {
		byKey[tt.NamespaceName+"/"+tt.Name] = tt
	}
	initial := func(key string) []string {
		tt := byKey[key]
		if tt == nil {
			t.Fatalf("missing example %s", key)
		}
		var names []string
		for _, s := range tt.InitialStepSet() {
			names = append(names, s.Name)
		}
		return names
	}
	// Step counts at task creation that tasker-core's E2E tests assert (e2e-scenarios §1.5).
	checks := map[string][]string{
		"rust_e2e_linear/mathematical_sequence":              {"linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4"},
		"conditional_approval_rust/approval_routing":         {"validate_request", "routing_decision"},
		"csv_processing_rust/csv_product_inventory_analyzer": {"analyze_csv"},
		"data_processing/large_dataset_processor":            {"analyze_dataset"},
	}
	for key, want := range checks {
		if got := initial(key); !reflect.DeepEqual(got, want) {
			t.Errorf("%s initial steps = %v, want %v", key, got, want)
		}
	}
	if n := len(initial("rust_e2e_tree/hierarchical_tree")); n != 8 {
		t.Errorf("tree has %d initial steps, want 8", n)
	}
	if n := len(initial("rust_e2e_mixed_dag/complex_dag")); n != 7 {
		t.Errorf("mixed DAG has %d initial steps, want 7", n)
	}
	de := byKey["domain_events_rust/domain_event_publishing"]
	var durable, fast int
	for _, s := range de.Steps {
		for _, e := range s.PublishesEvents {
			if e.Condition == ConditionFailure {
				continue
			}
			switch e.DeliveryMode {
			case DeliveryDurable:
				durable++
			case DeliveryFast:
				fast++
			}
		}
	}
	if durable != 1 || fast != 3 {
		t.Errorf("domain events on success: durable %d fast %d, want 1 and 3", durable, fast)
	}
	retry := byKey["rust_e2e_retry/retry_mechanics_test"].Steps[0].Retry
	if retry.MaxAttempts != 5 || !retry.Retryable {
		t.Errorf("retry mechanics retry = %+v", retry)
	}
	perm := byKey["test_errors/permanent_error_only"].Steps[0].Retry
	if perm.Retryable || perm.MaxAttempts != 1 {
		t.Errorf("permanent failure retry = %+v", perm)
	}
	ctx := `{"customer":{"id":12345,"name":"John Doe","email":"john.doe@example.com"},
		"items":[{"sku":"WIDGET-001","quantity":2,"price":29.99},{"sku":"GADGET-002","quantity":1,"price":149.99}],
		"payment":{"method":"credit_card","token":"tok_1234567890abcdef"},
		"shipping":{"method":"standard","address":{"street":"123 Main St","city":"Anytown","state":"CA","zip":"12345","country":"US"}}}`
	if err := ValidateContext(byKey["rust_e2e_order_fulfillment/business_workflow"], []byte(ctx)); err != nil {
		t.Errorf("order fulfillment E2E context rejected: %v", err)
	}
	if err := ValidateContext(byKey["rust_e2e_linear/mathematical_sequence"], []byte(`{"even_number": 1000}`)); err == nil {
		t.Error("linear accepted even_number 1000 (schema maximum is 100)")
	}
}

func TestLoadDirReportsEveryBadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/good.yaml", minimalYAML)
	write("a/dup.yml", minimalYAML)
	write("b/bad.yaml", "name: t\nnamespace_name: ns\nversion: '2'\nsteps:\n  - name: s\n    handler: {}\n")
	write("b/broken.yml", "name: [\n")
	write("b/ignored.yaml.backup", "not: a template\n")
	write("c/notes.txt", "ignored\n")

	ts, err := LoadDir(dir)
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want *LoadError, got %T %v", err, err)
	}
	if len(ts) != 1 {
		t.Fatalf("want the one valid template, got %d", len(ts))
	}
	var sources []string
	for _, ve := range le.Errors {
		sources = append(sources, filepath.Base(ve.Source))
	}
	slices.Sort(sources)
	if !reflect.DeepEqual(sources, []string{"bad.yaml", "broken.yml", "good.yaml"}) {
		t.Fatalf("bad files = %v (a/dup.yml sorts first, so a/good.yaml is the duplicate)", sources)
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join(dir, "b/bad.yaml") + ": steps[0].handler.callable: required",
		"template ns/t/1.0.0 is already defined in " + filepath.Join(dir, "a/dup.yml"),
		filepath.Join(dir, "b/broken.yml") + ": invalid YAML",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q:\n%s", want, msg)
		}
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Error("errors.As cannot reach a *ValidationError through LoadError")
	}

	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil || errors.As(err, &le) {
		t.Fatalf("missing dir: want a plain error, got %v", err)
	}
}

func TestInitialStepSetAndEnvironments(t *testing.T) {
	tt := mustParse(t, `
name: t
namespace_name: ns
version: '1'
steps:
  - {name: a, handler: {callable: x, initialization: {k: 1, keep: true}}}
  - {name: d, type: decision, dependencies: [a], handler: {callable: x}}
  - {name: b1, dependencies: [d], handler: {callable: x}}
  - {name: b2, dependencies: [b1], handler: {callable: x}}
  - {name: fin, type: deferred_convergence, dependencies: [b2], handler: {callable: x}}
environments:
  test:
    steps:
      - {name: ALL, timeout_seconds: 7}
      - {name: a, handler: {initialization: {k: 2}}, retry: {retryable: false, max_attempts: 1}}
`)
	if err := tt.Validate(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range tt.InitialStepSet() {
		names = append(names, s.Name)
	}
	if !reflect.DeepEqual(names, []string{"a", "d"}) {
		t.Fatalf("initial = %v", names)
	}
	r, err := tt.ResolveForEnvironment("test")
	if err != nil {
		t.Fatal(err)
	}
	a := r.Step("a")
	if string(a.Handler.Initialization["k"]) != "2" || string(a.Handler.Initialization["keep"]) != "true" {
		t.Errorf("merged initialization = %v", a.Handler.Initialization)
	}
	if a.Retry.Retryable || a.Retry.MaxAttempts != 1 || *a.TimeoutSeconds != 7 || *r.Step("fin").TimeoutSeconds != 7 {
		t.Errorf("overrides not applied: %+v", a)
	}
	if tt.Step("a").TimeoutSeconds != nil || string(tt.Step("a").Handler.Initialization["k"]) != "1" {
		t.Error("ResolveForEnvironment modified the original")
	}
	if same, _ := tt.ResolveForEnvironment("none"); !reflect.DeepEqual(same, tt) {
		t.Error("unknown environment should give an unchanged copy")
	}
}
