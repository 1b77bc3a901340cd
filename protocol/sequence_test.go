package protocol

import (
	"encoding/json"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNaiveTimeFormat(t *testing.T) {
	tests := []struct {
		ns   int
		want string
	}{
		{0, `"2026-03-21T21:16:08"`},
		{123_000_000, `"2026-03-21T21:16:08.123"`},
		{123_456_000, `"2026-03-21T21:16:08.123456"`},
		{123_456_789, `"2026-03-21T21:16:08.123456789"`},
		{100_000, `"2026-03-21T21:16:08.000100"`},
	}
	for _, tc := range tests {
		nt := NewNaiveTime(time.Date(2026, 3, 21, 22, 16, 8, tc.ns, time.FixedZone("CET", 3600)))
		if got := string(mustMarshal(t, nt)); got != tc.want {
			t.Errorf("ns=%d: got %s want %s", tc.ns, got, tc.want)
		}
		var back NaiveTime
		if err := json.Unmarshal([]byte(tc.want), &back); err != nil || !back.Equal(nt.Time) {
			t.Errorf("parse %s: %v %v", tc.want, back, err)
		}
	}
	for _, in := range []string{"2026-03-21 21:16:08.5", "2026-03-21T22:16:08.5+01:00", "2026-03-21T21:16:08.5Z"} {
		v, err := ParseNaiveTime(in)
		if err != nil || !v.Equal(time.Date(2026, 3, 21, 21, 16, 8, 500_000_000, time.UTC)) {
			t.Errorf("ParseNaiveTime(%q) = %v, %v", in, v, err)
		}
	}
	for _, in := range []string{"21/03/2026", "0000-01-01 0:00:00+01:00", "9999-12-31T23:30:00-01:00"} {
		if v, err := ParseNaiveTime(in); err == nil {
			t.Errorf("ParseNaiveTime(%q) = %v: accepted a non-ISO date or a UTC year outside 0000-9999", in, v)
		}
	}
	// The edges of the range round-trip.
	for _, in := range []string{"0000-01-01T00:00:00", "9999-12-31T23:59:59.999999999"} {
		v, err := ParseNaiveTime(in)
		if err != nil || v.String() != in {
			t.Errorf("ParseNaiveTime(%q) = %v, %v", in, v, err)
		}
	}
}

func TestTaskSequenceStepGolden(t *testing.T) {
	data := golden(t, "task_sequence_step.json")
	var seq TaskSequenceStep
	if err := json.Unmarshal(data, &seq); err != nil {
		t.Fatal(err)
	}
	if seq.Task.NamespaceName != "rust_e2e_linear" || seq.Task.Task.Priority != 5 || *seq.Task.Task.Initiator != "integration-test" ||
		seq.Task.Task.ParentCorrelationID != nil || string(seq.Task.Task.Context) != `{"even_number": 6, "_test_run_id": "abc"}` {
		t.Fatalf("task: %+v", seq.Task)
	}
	ws := seq.WorkflowStep
	if ws.Name != "linear_step_2" || ws.Attempts != nil || *ws.MaxAttempts != 3 || ws.Inputs != nil || ws.Checkpoint != nil ||
		ws.UpdatedAt.Nanosecond() != 123456789 {
		t.Fatalf("workflow step: %+v", ws)
	}
	dep, ok := seq.DependencyResults["linear_step_1"]
	if !ok || string(dep.Result) != "36" || !dep.Success {
		t.Fatalf("dependency: %+v", dep)
	}
	def := seq.StepDefinition
	if def.Handler.Callable != "linear_step_2" || def.Handler.EffectiveMethod() != "call" || def.Handler.UsesMethodDispatch() ||
		string(def.Handler.Initialization["operation"]) != `"square"` || def.Timeout() != 30*time.Second ||
		len(def.Dependencies) != 1 || def.EffectiveStepType() != StepTypeStandard {
		t.Fatalf("definition: %+v", def)
	}
	assertJSONEqual(t, mustMarshal(t, seq), data)
}

func TestStepDefinitionDefaultsAndAliases(t *testing.T) {
	var def StepDefinition
	in := `{"name":"routing","handler":{"callable":"router","method":"decide"},"step_type":"decision","depends_on":["validate"],
		"result_schema":{"type":"object"}}`
	if err := json.Unmarshal([]byte(in), &def); err != nil {
		t.Fatal(err)
	}
	if def.StepType != StepTypeDecision || len(def.Dependencies) != 1 || def.Dependencies[0] != "validate" ||
		def.Handler.EffectiveMethod() != "decide" || !def.Handler.UsesMethodDispatch() {
		t.Fatalf("decoded %+v", def)
	}
	assertJSONEqual(t, mustMarshal(t, def), []byte(`{"name":"routing","description":null,
		"handler":{"callable":"router","method":"decide","resolver":null,"initialization":{}},
		"type":"decision","system_dependency":null,"dependencies":["validate"],"retry":`+DefaultRetryJSON+`,
		"timeout_seconds":null,"publishes_events":[],"batch_config":null,"result_schema":{"type":"object"}}`))

	if err := json.Unmarshal([]byte(`{"name":"x","handler":{"callable":"c"},"type":"deferred"}`), &def); err == nil {
		t.Fatal(`"deferred" is not a step type (the YAML value is deferred_convergence)`)
	}
}

func TestEmptySequenceMarshalsObjects(t *testing.T) {
	keys := objectKeys(t, mustMarshal(t, TaskSequenceStep{}))
	if string(keys["dependency_results"]) != "{}" {
		t.Fatalf("dependency_results = %s", keys["dependency_results"])
	}
	ws := objectKeys(t, keys["workflow_step"])
	if string(ws["inputs"]) != "null" || string(ws["checkpoint"]) != "null" {
		t.Fatalf("workflow_step raw columns: %s %s", ws["inputs"], ws["checkpoint"])
	}
}
