package protocol

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecisionOutcomeJSON(t *testing.T) {
	tests := []struct {
		name string
		o    DecisionPointOutcome
		want string
	}{
		{"no branches", NoBranches(), `{"type":"no_branches"}`},
		{"create steps", CreateSteps("manager_approval", "finance_review"), `{"type":"create_steps","step_names":["manager_approval","finance_review"]}`},
		{"create none", CreateSteps(), `{"type":"create_steps","step_names":[]}`},
		{"nil names literal", DecisionPointOutcome{Type: DecisionCreateSteps}, `{"type":"create_steps","step_names":[]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := mustMarshal(t, tc.o)
			assertJSONEqual(t, data, []byte(tc.want))
			var back DecisionPointOutcome
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if back.Type != tc.o.Type || len(back.StepNames) != len(tc.o.StepNames) {
				t.Fatalf("round trip: %+v", back)
			}
		})
	}
	if _, err := json.Marshal(DecisionPointOutcome{}); err == nil {
		t.Fatal("an outcome without a type must not marshal")
	}
	for _, bad := range []string{
		`{"outcome_type":"CreateSteps","step_names":["a"]}`, // the stale doc-comment form
		`{"type":"CreateSteps","step_names":["a"]}`,
		`{"type":"create_steps"}`,
		`{"type":"create_steps","step_names":null}`,
		`{"type":"create_steps","step_names":[1]}`,
	} {
		var o DecisionPointOutcome
		if err := json.Unmarshal([]byte(bad), &o); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestDecisionOutcomeFromResult(t *testing.T) {
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(golden(t, "decision_create_steps.json"), &env); err != nil {
		t.Fatal(err)
	}
	o, ok, err := DecisionOutcomeFromResult(env.Result)
	if err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if !reflect.DeepEqual(o, CreateSteps("auto_approve")) {
		t.Fatalf("got %+v", o)
	}
	for _, in := range []string{`36`, `{"x":1}`, `null`, ``} {
		if _, ok, err := DecisionOutcomeFromResult(json.RawMessage(in)); ok || err != nil {
			t.Errorf("%q: ok=%v err=%v", in, ok, err)
		}
	}
	if _, ok, err := DecisionOutcomeFromResult(json.RawMessage(`{"decision_point_outcome":{"type":"weird"}}`)); !ok || err == nil {
		t.Errorf("unparseable outcome: ok=%v err=%v", ok, err)
	}
}

func TestBatchOutcomeJSON(t *testing.T) {
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(golden(t, "batch_outcome_create.json"), &env); err != nil {
		t.Fatal(err)
	}
	o, ok, err := BatchOutcomeFromResult(env.Result)
	if err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if o.Type != BatchCreateBatches || o.WorkerTemplateName != "process_csv_batch" || o.WorkerCount != 5 || o.TotalItems != 1000 ||
		len(o.CursorConfigs) != 1 || o.CursorConfigs[0].BatchID != "001" || string(o.CursorConfigs[0].StartCursor) != "1" ||
		string(o.CursorConfigs[0].EndCursor) != "201" || o.CursorConfigs[0].BatchSize != 200 {
		t.Fatalf("decoded %+v", o)
	}
	// Re-encoding gives the golden outcome back.
	var outer map[string]json.RawMessage
	_ = json.Unmarshal(env.Result, &outer)
	assertJSONEqual(t, mustMarshal(t, o), outer[BatchOutcomeKey])

	configs := []CursorConfig{
		IntCursorConfig("001", 0, 1000),
		{BatchID: "002", StartCursor: json.RawMessage(`"2025-11-01T00:00:00Z"`), EndCursor: json.RawMessage(`{"page":2}`), BatchSize: 7},
	}
	assertJSONEqual(t, mustMarshal(t, CreateBatches("process_batch", configs, 1007)), []byte(`{"type":"create_batches",
		"worker_template_name":"process_batch","worker_count":2,"cursor_configs":[
		{"batch_id":"001","start_cursor":0,"end_cursor":1000,"batch_size":1000},
		{"batch_id":"002","start_cursor":"2025-11-01T00:00:00Z","end_cursor":{"page":2},"batch_size":7}],"total_items":1007}`))
	assertJSONEqual(t, mustMarshal(t, NoBatches()), []byte(`{"type":"no_batches"}`))
	assertJSONEqual(t, mustMarshal(t, CreateBatches("w", nil, 0)),
		[]byte(`{"type":"create_batches","worker_template_name":"w","worker_count":0,"cursor_configs":[],"total_items":0}`))

	for _, bad := range []string{
		`{"type":"create_batches","worker_template_name":"w","worker_count":1,"cursor_configs":[]}`,
		`{"type":"create_batches","worker_template_name":"w","worker_count":-1,"cursor_configs":[],"total_items":0}`,
		`{"type":"NoBatches"}`,
		`{}`,
	} {
		var o BatchProcessingOutcome
		if err := json.Unmarshal([]byte(bad), &o); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestNoOpCursorAndBatchIDs(t *testing.T) {
	assertJSONEqual(t, mustMarshal(t, NoOpCursorConfig()), []byte(`{"batch_id":"000","start_cursor":0,"end_cursor":0,"batch_size":0}`))
	for i, want := range map[int]string{0: "001", 9: "010", 999: "1000"} {
		if got := BatchIDForIndex(i); got != want {
			t.Errorf("BatchIDForIndex(%d) = %q want %q", i, got, want)
		}
	}
	assertJSONEqual(t, mustMarshal(t, CursorConfig{BatchID: "x"}), []byte(`{"batch_id":"x","start_cursor":null,"end_cursor":null,"batch_size":0}`))
}

func TestBatchWorkerInputsGolden(t *testing.T) {
	data := golden(t, "batch_worker_inputs.json")
	var in BatchWorkerInputs
	if err := json.Unmarshal(data, &in); err != nil {
		t.Fatal(err)
	}
	if in.Cursor.BatchID != "batch_001" || string(in.Cursor.EndCursor) != "1000" || in.BatchMetadata.CursorField != "id" ||
		in.BatchMetadata.FailureStrategy != ContinueOnFailure || in.IsNoOp || in.TemplateStepName != "process_batch" {
		t.Fatalf("decoded %+v", in)
	}
	assertJSONEqual(t, mustMarshal(t, in), data)

	merged, err := in.MergeInto(map[string]json.RawMessage{"operation": json.RawMessage(`"transform"`), "is_no_op": json.RawMessage(`true`)})
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, mustMarshal(t, merged), []byte(`{"operation":"transform",
		"cursor":{"batch_id":"batch_001","start_cursor":0,"end_cursor":1000,"batch_size":1000},
		"batch_metadata":{"cursor_field":"id","failure_strategy":"continue_on_failure"},
		"is_no_op":false,"__template_step_name":"process_batch"}`))
}

func TestCheckpointJSON(t *testing.T) {
	data := golden(t, "checkpoint_record.json")
	var rec CheckpointRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if string(rec.Cursor) != "2000" || rec.ItemsProcessed != 2000 || len(rec.History) != 2 || string(rec.History[0].Cursor) != "1000" ||
		rec.History[1].Timestamp.Nanosecond() != 751105000 || string(rec.AccumulatedResults) != `{"running_total": 42}` {
		t.Fatalf("decoded %+v", rec)
	}

	y := CheckpointYieldData{StepUUID: goldenStep, Cursor: json.RawMessage(`{"page_token":"p2"}`), ItemsProcessed: 25}
	assertJSONEqual(t, mustMarshal(t, y), []byte(`{"step_uuid":"`+goldenStep.String()+`","cursor":{"page_token":"p2"},"items_processed":25,"accumulated_results":null}`))
	at := mustTime(t, "2026-03-21T22:00:00+01:00")
	assertJSONEqual(t, mustMarshal(t, y.ToRecord(at)), []byte(`{"cursor":{"page_token":"p2"},"items_processed":25,
		"timestamp":"2026-03-21T21:00:00Z","accumulated_results":null,"history":[]}`))
}
