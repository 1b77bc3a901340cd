package template

import (
	"reflect"
	"strings"
	"testing"
)

// tmpl builds a template document from a header and a steps block.
func tmpl(head, steps string) string {
	if head == "" {
		head = "name: t\nnamespace_name: ns\nversion: '1'\n"
	}
	return head + "steps:\n" + steps
}

func TestValidateProblems(t *testing.T) {
	std := "  - name: a\n    handler: {callable: x}\n"
	cases := []struct {
		name string
		src  string
		want []string
	}{
		{"missing identity", "steps:\n" + std,
			[]string{"name: required", "namespace_name: required", "version: required"}},
		{"namespace too long", tmpl("name: t\nnamespace_name: a_namespace_of_thirty_chars_xx\nversion: '1'\n", std),
			[]string{"namespace_name: must be at most 29 characters (queue names such as a_namespace_of_thirty_chars_xx_domain_events_dlq must fit PGMQ's 47-character limit)"}},
		{"namespace charset", tmpl("name: t\nnamespace_name: my-ns\nversion: '1'\n", std),
			[]string{"namespace_name: must contain only letters, digits and underscores"}},
		{"namespace leading digit", tmpl("name: t\nnamespace_name: 9ns\nversion: '1'\n", std),
			[]string{"namespace_name: must start with a letter or underscore"}},
		{"name and version too long for the columns",
			tmpl("name: "+strings.Repeat("n", 65)+"\nnamespace_name: ns\nversion: 1.0.0-beta.1234567\n", std),
			[]string{"name: must be at most 64 characters (named_tasks.name is varchar(64))", "version: must be at most 16 characters (named_tasks.version is varchar(16))"}},
		{"no steps", "name: t\nnamespace_name: ns\nversion: '1'\n", []string{"steps: at least one step is required"}},
		{"missing callable", tmpl("", std+"  - name: b\n  - name: c\n    handler: {callable: ''}\n"),
			[]string{"steps[1].handler.callable: required", "steps[2].handler.callable: required"}},
		{"missing step name", tmpl("", "  - handler: {callable: x}\n"), []string{"steps[0].name: required"}},
		{"duplicate step", tmpl("", std+std), []string{`steps[1].name: duplicate step name "a" (also steps[0])`}},
		{"empty method", tmpl("", "  - name: a\n    handler: {callable: x, method: ''}\n"),
			[]string{`steps[0].handler.method: must not be empty (omit it for "call")`}},
		{"unknown dependency", tmpl("", std+"  - name: b\n    handler: {callable: y}\n    dependencies: [a, nope, a, b]\n"),
			[]string{`steps[1].dependencies[1]: unknown step "nope"`, `steps[1].dependencies[2]: duplicate dependency "a"`, `steps[1].dependencies[3]: step "b" depends on itself`}},
		{"retry bounds", tmpl("", "  - name: a\n    handler: {callable: x}\n    retry: {max_attempts: 0, backoff_base_ms: 5000, max_backoff_ms: 1000}\n    timeout_seconds: 0\n"),
			[]string{"steps[0].retry.max_attempts: must be between 1 and 100", "steps[0].retry.backoff_base_ms: must not exceed max_backoff_ms (1000)", "steps[0].timeout_seconds: must be greater than 0"}},
		{"too many attempts", tmpl("", "  - name: a\n    handler: {callable: x}\n    retry: {max_attempts: 101}\n"),
			[]string{"steps[0].retry.max_attempts: must be between 1 and 100"}},
		{"event names", tmpl("", `  - name: a
    handler: {callable: x}
    publishes_events:
      - {name: nodot, description: d, schema: {type: object}}
      - {name: .lead, description: d, schema: {type: object}}
      - {name: a..b, description: d, schema: {type: object}}
      - {name: Order.Created, description: d, schema: {type: object}}
      - {name: order.created, schema: {type: object}, publisher: "9bad"}
      - {name: order.paid, description: d}
      - {name: order.x, description: d, schema: 5}
`), []string{
			`steps[0].publishes_events[0].name: event name "nodot" must contain at least one dot (namespace.action)`,
			`steps[0].publishes_events[1].name: event name ".lead" must not start or end with a dot`,
			`steps[0].publishes_events[2].name: event name "a..b" must not contain consecutive dots`,
			`steps[0].publishes_events[3].name: event name "Order.Created" must contain only lowercase letters, digits, underscores and dots`,
			"steps[0].publishes_events[4].description: required",
			`steps[0].publishes_events[4].publisher: publisher "9bad" must be an identifier such as PaymentEventPublisher, my_module::Publisher or package.Publisher`,
			"steps[0].publishes_events[5].schema: required",
			"steps[0].publishes_events[6].schema: must be a JSON Schema (an object or a boolean)",
		}},
		{"bad input schema", "name: t\nnamespace_name: ns\nversion: '1'\ninput_schema:\n  type: object\n  required: n\n  properties:\n    n: {type: int, minimum: low, minLength: -1, pattern: '(?<=x)'}\nsteps:\n" + std,
			[]string{
				"input_schema.properties.n.minLength: must be >= 0 (got -1)",
				"input_schema.properties.n.minimum: must be of type number (got string)",
				"input_schema.properties.n.pattern: is not a valid regular expression (Go RE2 syntax): error parsing regexp: invalid named capture: `(?<=x)`",
				`input_schema.properties.n.type: must be one of "array", "boolean", "integer", "null", "number", "object", "string" (got "int")`,
				"input_schema.required: must be of type array (got string)",
			}},
		{"decision without parents or children", tmpl("", "  - name: d\n    type: decision\n    handler: {callable: x}\n"),
			[]string{`steps[0].dependencies: decision step "d" must have at least one dependency`, `steps[0].type: decision step "d" has no dependent steps, so it has nothing to create`}},
		{"batchable without worker", tmpl("", "  - name: b\n    type: batchable\n    handler: {callable: x}\n"),
			[]string{`steps[0].type: batchable step "b" needs a batch_worker step that depends on it`}},
		{"batch worker without config or batchable parent", tmpl("", std+"  - name: w\n    type: batch_worker\n    dependencies: [a]\n    handler: {callable: y}\n"),
			[]string{"steps[1].batch_config: required for batch_worker steps (the orchestrator reads it when it creates workers)",
				`steps[1].dependencies: batch_worker step "w" must depend on the batchable step that creates its workers`}},
		{"batch config fields", tmpl("", `  - name: b
    type: batchable
    handler: {callable: x, initialization: {worker_template_name: other}}
  - name: w
    type: batch_worker
    dependencies: [b]
    handler: {callable: y}
    batch_config: {batch_size: 0, parallelism: 1001, worker_template: b}
  - name: s
    dependencies: [w]
    handler: {callable: z}
`), []string{
			"steps[1].batch_config.batch_size: must be between 1 and 100000",
			"steps[1].batch_config.parallelism: must be between 1 and 1000",
			"steps[1].batch_config.cursor_field: required",
			`steps[0].handler.initialization.worker_template_name: "other" is not a batch_worker step depending on "b" (want one of w)`,
			`steps[1].batch_config.worker_template: must be "w", the name of this batch_worker step`,
			`steps[2].dependencies[0]: only deferred_convergence steps may depend on batch_worker step "w"`,
		}},
		{"convergence that is never created", tmpl("", std+"  - name: c\n    type: deferred_convergence\n    dependencies: [a]\n    handler: {callable: y}\n"),
			[]string{`steps[1].dependencies: deferred_convergence step "c" must depend on a batch_worker step or on steps created by a decision point; otherwise it is never created`}},
		{"batch_config on a standard step", tmpl("", "  - name: a\n    handler: {callable: x}\n    batch_config: {batch_size: 1, parallelism: 1, cursor_field: id, worker_template: a}\n"),
			[]string{"steps[0].batch_config: only batch_worker steps use batch_config (this step is standard)"}},
		{"environment overrides", "name: t\nnamespace_name: ns\nversion: '1'\nsteps:\n" + std +
			"environments:\n  test:\n    steps:\n      - name: ghost\n      - {name: ALL, timeout_seconds: 0, retry: {max_attempts: 0}}\n",
			[]string{`environments.test.steps[0].name: no step named "ghost" (use "ALL" for every step)`,
				"environments.test.steps[1].timeout_seconds: must be greater than 0",
				"environments.test.steps[1].retry.max_attempts: must be between 1 and 100"}},
		{"lifecycle", "name: t\nnamespace_name: ns\nversion: '1'\nlifecycle: {max_duration_minutes: 0, max_steps_in_process_minutes: 10081, staleness_action: explode}\nsteps:\n" + std,
			[]string{"lifecycle.max_duration_minutes: must be between 1 and 43200",
				"lifecycle.max_steps_in_process_minutes: must be between 1 and 10080",
				`lifecycle.staleness_action: unknown staleness action "explode" (want one of dlq, error, none)`}},
		{"empty primary system", "name: t\nnamespace_name: ns\nversion: '1'\nsystem_dependencies: {primary: ''}\nsteps:\n" + std,
			[]string{`system_dependencies.primary: must not be empty (omit it for "default")`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tt, err := Parse([]byte(tc.src), "templates/x.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = tt.Validate()
			if err == nil {
				t.Fatal("Validate passed")
			}
			got := problemsOf(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

func TestValidationErrorMessageFormat(t *testing.T) {
	tt, err := Parse([]byte(tmpl("", "  - name: a\n    handler: {callable: x}\n  - name: b\n  - name: c\n    handler: {callable: ''}\n")), "templates/x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := tt.Validate().Error()
	want := "templates/x.yaml: steps[1].handler.callable: required\ntemplates/x.yaml: steps[2].handler.callable: required"
	if got != want {
		t.Fatalf("Error()\n got: %q\nwant: %q", got, want)
	}
}

func TestValidateCycles(t *testing.T) {
	cases := []struct {
		name  string
		steps string
		want  []string
	}{
		{"two-step cycle", `
  - {name: a, handler: {callable: x}, dependencies: [b]}
  - {name: b, handler: {callable: x}, dependencies: [a]}
`, []string{"steps[0].dependencies: dependency cycle: a -> b -> a (each step depends on the next)"}},
		{"three-step cycle behind a root", `
  - {name: root, handler: {callable: x}}
  - {name: p, handler: {callable: x}, dependencies: [root, r]}
  - {name: q, handler: {callable: x}, dependencies: [p]}
  - {name: r, handler: {callable: x}, dependencies: [q]}
`, []string{"steps[1].dependencies: dependency cycle: p -> r -> q -> p (each step depends on the next)"}},
		{"two separate cycles", `
  - {name: a, handler: {callable: x}, dependencies: [b]}
  - {name: b, handler: {callable: x}, dependencies: [a]}
  - {name: c, handler: {callable: x}, dependencies: [d]}
  - {name: d, handler: {callable: x}, dependencies: [c]}
`, []string{
			"steps[0].dependencies: dependency cycle: a -> b -> a (each step depends on the next)",
			"steps[2].dependencies: dependency cycle: c -> d -> c (each step depends on the next)",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tt, err := Parse([]byte(tmpl("", tc.steps)), "c.yaml")
			if err != nil {
				t.Fatal(err)
			}
			got := problemsOf(t, tt.Validate())
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
	// A diamond is not a cycle.
	tt, err := Parse([]byte(tmpl("", `
  - {name: a, handler: {callable: x}}
  - {name: b, handler: {callable: x}, dependencies: [a]}
  - {name: c, handler: {callable: x}, dependencies: [a]}
  - {name: d, handler: {callable: x}, dependencies: [b, c]}
`)), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := tt.Validate(); err != nil {
		t.Fatalf("diamond rejected: %v", err)
	}
}
