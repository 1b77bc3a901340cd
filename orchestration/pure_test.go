package orchestration

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/template"
)

func TestCanonicalJSONAndIdentityHash(t *testing.T) {
	a, err := decodeJSON([]byte(`{"b": 2, "a": {"y": [3, 1.50, "x<y"], "x": null}}`))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := canonicalJSON(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":{"x":null,"y":[3,1.50,"x<y"]},"b":2}`; string(ca) != want {
		t.Fatalf("canonical: got %s, want %s", ca, want)
	}
	b, _ := decodeJSON([]byte(`{"a":{"y":[3,1.50,"x<y"],"x":null},"b":2}`))
	cb, _ := canonicalJSON(b)
	nt := uuid.MustParse("0190f4a2-0000-7000-8000-000000000001")
	ha, hb := identityHash(nt, identityTagContext, ca), identityHash(nt, identityTagContext, cb)
	if ha != hb || len(ha) != 64 || strings.ToLower(ha) != ha {
		t.Fatalf("hash not canonical: %s vs %s", ha, hb)
	}
	if identityHash(uuid.MustParse("0190f4a2-0000-7000-8000-000000000002"), identityTagContext, ca) == ha {
		t.Fatal("hash ignores the named task")
	}
	if identityHash(nt, identityTagKey, ca) == ha {
		t.Fatal("hash ignores the tag")
	}
	if _, err := decodeJSON([]byte(`{"a":1} {"b":2}`)); err == nil {
		t.Fatal("trailing data accepted")
	}
}

func TestJSONLimits(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	keys := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `"k` + strings.Repeat("x", 0) + string(rune('a'+i%26)) + strings.Repeat("0", i/26) + `":1`
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	cases := []struct {
		name, doc, field, msg string
	}{
		{"ok", `{"a":[1,2,{"b":"c"}]}`, "", ""},
		{"depth 10 ok", deep(10), "", ""},
		{"depth 11", deep(11), "context" + strings.Repeat(".a", 11), "nesting too deep: 11"},
		{"1000 keys ok", keys(1000), "", ""},
		{"1001 keys", keys(1001), "context", "too many JSON keys: 1001"},
		{"array", `{"list":[` + strings.TrimSuffix(strings.Repeat("1,", 1001), ",") + `]}`, "context.list", "array too large: 1001"},
		{"string", `{"s":"` + strings.Repeat("x", 10001) + `"}`, "context.s", "string too long: 10001"},
		{"key", `{"` + strings.Repeat("k", 10001) + `":1}`, "context", "key too long"},
		{"nested item", `{"items":[{"q":"` + strings.Repeat("y", 10001) + `"}]}`, "context.items[0].q", "string too long"},
	}
	for _, c := range cases {
		v, err := decodeJSON([]byte(c.doc))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		canon, _ := canonicalJSON(v)
		p := checkJSONLimits("context", v, canon)
		switch {
		case c.msg == "" && p != nil:
			t.Errorf("%s: unexpected problem %v", c.name, *p)
		case c.msg != "" && p == nil:
			t.Errorf("%s: no problem reported", c.name)
		case c.msg != "" && (p.Field != c.field || !strings.Contains(p.Message, c.msg)):
			t.Errorf("%s: got %s: %s, want %s: …%s…", c.name, p.Field, p.Message, c.field, c.msg)
		}
	}
	big := `{"s":[` + strings.TrimSuffix(strings.Repeat(`"`+strings.Repeat("z", 9000)+`",`, 200), ",") + `]}`
	v, _ := decodeJSON([]byte(big))
	canon, _ := canonicalJSON(v)
	if p := checkJSONLimits("context", v, canon); p == nil || !strings.Contains(p.Message, "too large") {
		t.Fatalf("1.8 MB payload: got %v", p)
	}
}

func TestNormalizeRequest(t *testing.T) {
	_, err := normalizeRequest(TaskRequest{Priority: 500, Context: json.RawMessage(`{"a":`), Initiator: strings.Repeat("i", 129)})
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	fields := ve.Fields()
	for _, f := range []string{"name", "namespace", "initiator", "priority", "context"} {
		if !slices.Contains(fields, f) {
			t.Errorf("no problem for %s in %v", f, fields)
		}
	}
	n, err := normalizeRequest(TaskRequest{Name: "n", Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	if string(n.context) != "{}" || string(n.tags) != "[]" || n.initiator != "system" || n.sourceSystem != "tasker-go" ||
		n.reason != "Task requested" || n.correlationID.Version() != 7 || time.Since(n.requestedAt) > time.Minute {
		t.Fatalf("defaults: %+v", n)
	}
}

func TestTaskRequestJSON(t *testing.T) {
	var r TaskRequest
	body := `{"name":"linear","namespace":"ns","version":"1.0.0","context":{"n":2},"initiator":"me",
		"source_system":"test","reason":"why","tags":["a"],"priority":5,
		"correlation_id":"0190f4a2-0000-7000-8000-000000000001","requested_at":"2026-03-21T21:16:08.123",
		"idempotency_key":null,"options":null}`
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Name != "linear" || r.Priority != 5 || r.CorrelationID == nil || r.IdempotencyKey != nil ||
		!r.RequestedAt.Equal(time.Date(2026, 3, 21, 21, 16, 8, 123e6, time.UTC)) || string(r.Context) != `{"n":2}` {
		t.Fatalf("decoded %+v", r)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"requested_at":"2026-03-21T21:16:08.123"`) {
		t.Fatalf("encoded %s", out)
	}
}

const decisionYAML = `
name: combined
namespace_name: plan_test
version: 1.0.0
steps:
  - name: start
    handler: {callable: h}
  - name: route
    type: decision
    dependencies: [start]
    handler: {callable: h}
  - name: branch_a
    dependencies: [route]
    handler: {callable: h}
  - name: branch_a2
    dependencies: [branch_a]
    handler: {callable: h}
  - name: branch_b
    dependencies: [route]
    handler: {callable: h}
  - name: analyzer
    type: batchable
    dependencies: [route]
    handler: {callable: h, initialization: {worker_template_name: worker}}
  - name: worker
    type: batch_worker
    dependencies: [analyzer]
    handler: {callable: h}
    batch_config: {batch_size: 10, parallelism: 2, cursor_field: id, worker_template: worker}
  - name: agg
    type: deferred_convergence
    dependencies: [worker]
    handler: {callable: h}
  - name: join
    type: deferred_convergence
    dependencies: [branch_a2, branch_b]
    handler: {callable: h}
  - name: after_join
    dependencies: [join]
    handler: {callable: h}
  - name: second_decision
    type: decision
    dependencies: [branch_b]
    handler: {callable: h}
  - name: deep
    dependencies: [second_decision]
    handler: {callable: h}
`

func TestPlanDecision(t *testing.T) {
	tmpl, err := template.Parse([]byte(decisionYAML), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		req  []string
		want []string
	}{
		// branch_a2 follows by the forward walk; join by intersection; after_join since all its
		// dependencies are in the set; the segment's exit decision is always created.
		{[]string{"branch_a"}, []string{"branch_a", "branch_a2", "join", "after_join", "second_decision"}},
		{[]string{"branch_b"}, []string{"branch_b", "join", "after_join", "second_decision"}},
		// batch worker templates and the convergence behind them are left to batch processing.
		{[]string{"analyzer"}, []string{"analyzer", "second_decision"}},
		{nil, nil},
	}
	for _, c := range cases {
		got, err := planDecision(tmpl, "route", c.req, 100)
		if err != nil {
			t.Fatalf("%v: %v", c.req, err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: got %v, want %v", c.req, got, c.want)
		}
	}
	for _, bad := range [][]string{{"deep"}, {"start"}, {"nope"}} {
		_, err := planDecision(tmpl, "route", bad, 100)
		var ee *ExpansionError
		if !errors.As(err, &ee) {
			t.Errorf("%v: want *ExpansionError, got %v", bad, err)
		}
	}
	if _, err := planDecision(tmpl, "route", []string{"branch_a", "branch_b"}, 1); err == nil {
		t.Error("max steps not enforced")
	}
	got, err := planDecision(tmpl, "second_decision", []string{"deep"}, 100)
	if err != nil || !slices.Equal(got, []string{"deep"}) {
		t.Errorf("nested decision: %v %v", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.ProcessorUUID.Version() != 7 || c.Backoff.Base != time.Second || c.Backoff.Max != time.Hour ||
		c.Backoff.Multiplier != 2 || c.Backoff.JitterPercent != 0.15 || c.ResultBatchSize != 20 ||
		c.RecoveryInterval != 10*time.Second || c.MaxDecisionSteps != 100 || c.DefaultStepTimeout != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	c.Backoff.Max = time.Millisecond
	c.PollInterval = time.Microsecond
	c.Backoff.JitterPercent = 2
	err := c.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want ConfigError, got %v", err)
	}
	for _, f := range []string{"Backoff.Max", "PollInterval", "Backoff.JitterPercent"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("no error for %s in %v", f, err)
		}
	}
}
