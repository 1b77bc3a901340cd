package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const minimalYAML = `
name: t
namespace_name: ns
version: 1.0.0
steps:
  - name: a
    handler: {callable: x}
`

// The JSON tasker-core's serde_json::to_value writes for minimalYAML: every field present,
// options null, lists [], maps {}, default retry with 1000/30000.
const minimalJSON = `{"name":"t","namespace_name":"ns","version":"1.0.0","description":null,"metadata":null,` +
	`"system_dependencies":{"primary":"default","secondary":[]},"domain_events":[],"input_schema":null,` +
	`"steps":[{"name":"a","description":null,"handler":{"callable":"x","method":null,"resolver":null,"initialization":{}},` +
	`"type":"standard","system_dependency":null,"dependencies":[],` +
	`"retry":{"retryable":true,"max_attempts":3,"backoff":"exponential","backoff_base_ms":1000,"max_backoff_ms":30000},` +
	`"timeout_seconds":null,"publishes_events":[],"batch_config":null}],"environments":{},"lifecycle":null}`

func mustParse(t *testing.T, src string, opts ...Option) *TaskTemplate {
	t.Helper()
	tt, err := Parse([]byte(src), "test.yaml", opts...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tt
}

func TestParseMinimalJSONMatchesTaskerCore(t *testing.T) {
	tt := mustParse(t, minimalYAML)
	got, err := json.Marshal(tt)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != minimalJSON {
		t.Fatalf("JSON mismatch\n got: %s\nwant: %s", got, minimalJSON)
	}
	if tt.Key() != "ns/t/1.0.0" {
		t.Fatalf("Key = %q", tt.Key())
	}
	if tt.Source != "test.yaml" {
		t.Fatalf("Source = %q", tt.Source)
	}
}

func TestParseZeroValueTemplateMarshalsDefaults(t *testing.T) {
	// A template built in Go without Parse must still serialize to JSON a Rust reader accepts:
	// no null where tasker-core has a list, map or enum.
	tt := &TaskTemplate{Name: "t", NamespaceName: "ns", Version: "1.0.0",
		Steps: []StepDefinition{{Name: "a", Handler: HandlerDefinition{Callable: "x"}, Retry: DefaultRetry()}}}
	got, err := json.Marshal(tt)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != minimalJSON {
		t.Fatalf("JSON mismatch\n got: %s\nwant: %s", got, minimalJSON)
	}
}

func TestParseDefaultsAliasesAndPartialRetry(t *testing.T) {
	tt := mustParse(t, `
name: t
namespace_name: ns
version: 1.0   # a YAML float, read as the string "1.0" as serde_yaml does
description: d
steps:
  - name: a
    handler:
      callable: x
      method: validate
      initialization: {k: 1, nested: {b: [true, null, 2.5]}, s: "<b>"}
    retry: {max_attempts: 5}
    timeout_seconds: 10
  - name: b
    step_type: decision
    depends_on: [a]
    handler: {callable: y}
    retry: ~
    publishes_events:
      - name: order.done
        description: done
        schema: {type: object}
  - name: d
    dependencies: [b]
    handler: {callable: w}
  - name: c
    type: deferred_convergence
    dependencies: [d]
    handler: {callable: z}
`)
	if tt.Version != "1.0" {
		t.Errorf("version = %q, want 1.0", tt.Version)
	}
	a, b, c := tt.Steps[0], tt.Steps[1], tt.Steps[3]
	if a.Type != StepStandard || b.Type != StepDecision || c.Type != StepDeferredConvergence {
		t.Errorf("types = %s %s %s", a.Type, b.Type, c.Type)
	}
	if !reflect.DeepEqual(b.Dependencies, []string{"a"}) {
		t.Errorf("depends_on alias: %v", b.Dependencies)
	}
	wantRetry := RetryConfiguration{Retryable: true, MaxAttempts: 5, Backoff: BackoffExponential}
	if !reflect.DeepEqual(a.Retry, wantRetry) {
		t.Errorf("partial retry = %+v, want %+v (absent backoff ms stay null)", a.Retry, wantRetry)
	}
	if !reflect.DeepEqual(b.Retry, DefaultRetry()) {
		t.Errorf("null retry = %+v, want the default block", b.Retry)
	}
	if a.Handler.EffectiveMethod() != "validate" || b.Handler.EffectiveMethod() != "call" {
		t.Errorf("effective methods %q %q", a.Handler.EffectiveMethod(), b.Handler.EffectiveMethod())
	}
	if got := string(a.Handler.Initialization["nested"]); got != `{"b":[true,null,2.5]}` {
		t.Errorf("nested initialization = %s", got)
	}
	if got := string(a.Handler.Initialization["s"]); got != `"<b>"` {
		t.Errorf("string initialization = %s", got)
	}
	e := b.PublishesEvents[0]
	if e.Condition != ConditionSuccess || e.DeliveryMode != DeliveryDurable || e.Publisher != nil {
		t.Errorf("event defaults = %+v", e)
	}
	raw, _ := json.Marshal(a)
	if !strings.Contains(string(raw), `"retry":{"retryable":true,"max_attempts":5,"backoff":"exponential","backoff_base_ms":null,"max_backoff_ms":null}`) {
		t.Errorf("step JSON: %s", raw)
	}
	if err := tt.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestParseJSONRoundTrip(t *testing.T) {
	src := `
name: t
namespace_name: ns
version: "2"
identity_strategy: always_unique
metadata:
  author: me
  tags: [x]
  created_at: 2025-08-29T10:11:12.5+02:00
  notes: dropped, like tasker-core does
input_schema: {type: object, required: [n], properties: {n: {type: integer, minimum: 2}}}
lifecycle: {max_steps_in_process_minutes: 30}
steps:
  - name: a
    handler: {callable: x, resolver: explicit_mapping, initialization: {big: 123456789012345678901234567890, f: 1e3, h: 0x1F}}
    batch_config: {batch_size: 10, parallelism: 2, cursor_field: id, worker_template: a}
    type: batch_worker
    dependencies: [z]
    result_schema: {type: object}
  - name: z
    type: batchable
    handler: {callable: y}
environments:
  prod:
    steps:
      - name: ALL
        handler: {initialization: {debug: false}}
        retry: {max_attempts: 2}
`
	tt := mustParse(t, src)
	if err := tt.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	b1, err := json.Marshal(tt)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJSON(b1, "json")
	if err != nil {
		t.Fatalf("ParseJSON: %v", err)
	}
	back.Source = tt.Source
	if !reflect.DeepEqual(tt, back) {
		b2, _ := json.Marshal(back)
		t.Fatalf("round trip differs\n first: %s\nsecond: %s", b1, b2)
	}
	var m map[string]any
	if err := json.Unmarshal(b1, &m); err != nil {
		t.Fatal(err)
	}
	if m["identity_strategy"] != "always_unique" {
		t.Errorf("identity_strategy = %v", m["identity_strategy"])
	}
	md := m["metadata"].(map[string]any)
	if md["created_at"] != "2025-08-29T08:11:12.500Z" {
		t.Errorf("created_at = %v (want chrono's UTC form with milliseconds)", md["created_at"])
	}
	if _, ok := md["notes"]; ok {
		t.Error("metadata.notes should be dropped")
	}
	init := tt.Steps[0].Handler.Initialization
	if string(init["big"]) != "123456789012345678901234567890" || string(init["f"]) != "1e3" || string(init["h"]) != "31" {
		t.Errorf("numbers: big=%s f=%s h=%s", init["big"], init["f"], init["h"])
	}
	lc := m["lifecycle"].(map[string]any)
	if lc["staleness_action"] != "dlq" || lc["max_duration_minutes"] != nil {
		t.Errorf("lifecycle = %v", lc)
	}
	// Step JSON keeps result_schema, and drops composition when absent.
	st := m["steps"].([]any)[0].(map[string]any)
	if _, ok := st["composition"]; ok {
		t.Error("composition should be omitted when absent")
	}
	if _, ok := st["result_schema"]; !ok {
		t.Error("result_schema missing")
	}
}

func TestUnmarshalJSONAppliesDefaultsAndAliases(t *testing.T) {
	var tt TaskTemplate
	err := json.Unmarshal([]byte(`{"name":"t","namespace_name":"ns","version":"1","future_key":1,
		"steps":[{"name":"a","handler":{"callable":"x"},"step_type":"decision","depends_on":["b"]},
		         {"name":"b","handler":{"callable":"y"}}]}`), &tt)
	if err != nil {
		t.Fatal(err)
	}
	a := tt.Steps[0]
	if a.Type != StepDecision || !reflect.DeepEqual(a.Dependencies, []string{"b"}) || !reflect.DeepEqual(a.Retry, DefaultRetry()) {
		t.Fatalf("step = %+v", a)
	}
	if tt.SystemDependencies.Primary != "default" {
		t.Fatalf("primary = %q", tt.SystemDependencies.Primary)
	}
}

func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T %v", err, err)
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.String()
	}
	return out
}

func TestParseShapeErrors(t *testing.T) {
	head := "name: t\nnamespace_name: ns\nversion: '1'\n"
	cases := []struct {
		name string
		src  string
		want []string
	}{
		{"empty", "", []string{"empty document"}},
		{"comments only", "# nothing\n", []string{"empty document"}},
		{"not a mapping", "- a\n- b\n", []string{"a template must be a mapping with name, namespace_name, version and steps"}},
		{"syntax", "name: [unclosed\n", []string{"invalid YAML: line 1: did not find expected ',' or ']'"}},
		{"two documents", head + "---\nname: u\n", []string{"a template file must hold exactly one YAML document"}},
		{"unknown top-level key", head + "stepz: []\n", []string{"stepz: unknown field (known fields: name, namespace_name, version, description, metadata, system_dependencies, domain_events, input_schema, steps, environments, lifecycle, identity_strategy)"}},
		{"misspelt dependencies", head + "steps:\n  - name: a\n    handler: {callable: x}\n    dependecies: [b]\n",
			[]string{"steps[0].dependecies: unknown field (known fields: name, description, handler, type/step_type, system_dependency, dependencies/depends_on, retry, timeout_seconds, publishes_events, batch_config, result_schema, composition)"}},
		{"legacy retry.limit", head + "steps:\n  - name: a\n    handler: {callable: x}\n    retry: {limit: 3}\n",
			[]string{"steps[0].retry.limit: limit is not a tasker-core retry field (tasker-core ignores it and uses max_attempts, default 3); use max_attempts"}},
		{"legacy task_handler", head + "task_handler: {callable: X}\n",
			[]string{"task_handler: task_handler is no longer part of tasker-core's template format (tasker-core ignores it); remove it"}},
		{"type and step_type", head + "steps:\n  - name: a\n    type: decision\n    step_type: standard\n    handler: {callable: x}\n",
			[]string{`steps[0].step_type: duplicate field "type" (already given at line 6)`}},
		{"bad step type", head + "steps:\n  - name: a\n    type: deferred\n    handler: {callable: x}\n",
			[]string{`steps[0].type: unknown step type "deferred" (want one of standard, decision, deferred_convergence, batchable, batch_worker)`}},
		{"steps not a list", head + "steps: {a: 1}\n", []string{"steps: must be a list (of steps)"}},
		{"handler not a mapping", head + "steps:\n  - name: a\n    handler: x\n", []string{"steps[0].handler: must be a mapping (step handler)"}},
		{"max_attempts not an int", head + "steps:\n  - name: a\n    handler: {callable: x}\n    retry: {max_attempts: three}\n",
			[]string{"steps[0].retry.max_attempts: must be an integer"}},
		{"negative timeout", head + "steps:\n  - name: a\n    handler: {callable: x}\n    timeout_seconds: -1\n",
			[]string{"steps[0].timeout_seconds: must not be negative"}},
		{"float attempts", head + "steps:\n  - name: a\n    handler: {callable: x}\n    retry: {max_attempts: 3.0}\n",
			[]string{"steps[0].retry.max_attempts: must be an integer"}},
		{"retryable not bool", head + "steps:\n  - name: a\n    handler: {callable: x}\n    retry: {retryable: sometimes}\n",
			[]string{"steps[0].retry.retryable: must be true or false"}},
		{"bad delivery mode", head + "steps:\n  - name: a\n    handler: {callable: x}\n    publishes_events:\n      - {name: a.b, description: d, schema: {}, delivery_mode: slow}\n",
			[]string{`steps[0].publishes_events[0].delivery_mode: unknown delivery mode "slow" (want one of durable, fast, broadcast)`}},
		{"initialization not a map", head + "steps:\n  - name: a\n    handler: {callable: x, initialization: [1]}\n",
			[]string{"steps[0].handler.initialization: must be a mapping"}},
		{"merge key", head + "defaults: &d {callable: x}\n", []string{"defaults: unknown field (known fields: name, namespace_name, version, description, metadata, system_dependencies, domain_events, input_schema, steps, environments, lifecycle, identity_strategy)"}},
		{"merge key in handler", head + "steps:\n  - name: a\n    handler: {<<: {callable: x}}\n", []string{"steps[0].handler.<<: YAML merge keys (<<) are not supported"}},
		{"duplicate initialization key", head + "steps:\n  - name: a\n    handler:\n      callable: x\n      initialization:\n        k: 1\n        k: 2\n",
			[]string{"steps[0].handler.initialization.k: duplicate key (already given at line 9)"}},
		{"bad timestamp", head + "metadata: {created_at: yesterday}\n", []string{"metadata.created_at: must be an RFC 3339 timestamp such as 2025-08-29T00:00:00Z"}},
		{"bad identity strategy", head + "identity_strategy: loose\n",
			[]string{`identity_strategy: unknown identity strategy "loose" (want one of strict, caller_provided, always_unique)`}},
		{"several problems at once", head + "steps:\n  - name: a\n    handler: {callable: [x]}\n    timeout_seconds: x\n",
			[]string{"steps[0].handler.callable: must be a string", "steps[0].timeout_seconds: must be an integer"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "templates/x.yaml")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			got := problemsOf(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems\n got: %q\nwant: %q", got, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "templates/x.yaml: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

func TestParseAllowUnknownFields(t *testing.T) {
	src := minimalYAML + "loaded_from: somewhere\ntask_handler: {callable: X}\n"
	if _, err := Parse([]byte(src), "x.yaml"); err == nil {
		t.Fatal("strict Parse accepted unknown keys")
	}
	tt := mustParse(t, src, AllowUnknownFields())
	got, _ := json.Marshal(tt)
	if string(got) != minimalJSON {
		t.Fatalf("unknown keys leaked into JSON: %s", got)
	}
}

func TestParseAliasLimits(t *testing.T) {
	// A billion-laughs document (10^9 leaves) is refused quickly instead of expanding.
	var b strings.Builder
	b.WriteString("name: t\nnamespace_name: ns\nversion: '1'\nsteps: []\nenvironments: {}\n")
	b.WriteString("metadata:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		refs := strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10)
		fmt.Fprintf(&b, "  a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(refs, ", "))
	}
	b.WriteString("input_schema: *a8\n")
	_, err := Parse([]byte(b.String()), "bomb.yaml")
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Fatalf("want a size error, got %v", err)
	}
	// A self-referencing anchor in a free-form value is reported, not followed forever.
	_, err = Parse([]byte("name: t\nnamespace_name: ns\nversion: '1'\ninput_schema: &s {a: *s}\nsteps: []\n"), "rec.yaml")
	if err == nil {
		t.Fatal("recursive alias accepted")
	}
}

func TestAnchorsAndAliasesWork(t *testing.T) {
	tt := mustParse(t, `
name: t
namespace_name: ns
version: '1'
steps:
  - name: a
    handler: {callable: x}
    retry: &r {retryable: false, max_attempts: 1}
  - name: b
    handler: {callable: y}
    retry: *r
`)
	if tt.Steps[1].Retry.Retryable || tt.Steps[1].Retry.MaxAttempts != 1 {
		t.Fatalf("aliased retry = %+v", tt.Steps[1].Retry)
	}
}
