package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/protocol"
)

func TestDecisionResults(t *testing.T) {
	var d Decision
	tests := []struct {
		name string
		r    Result
		want string
	}{
		{"single step", d.DecisionSuccess([]string{"auto_approve"}, nil),
			`{"decision_point_outcome":{"type":"create_steps","step_names":["auto_approve"]}}`},
		{"dual with routing context", d.DecisionSuccess([]string{"manager_approval", "finance_review"}, map[string]any{"route_type": "dual_approval"}),
			`{"decision_point_outcome":{"type":"create_steps","step_names":["manager_approval","finance_review"]},"routing_context":{"route_type":"dual_approval"}}`},
		{"empty step list stays an array", d.DecisionSuccess(nil, nil),
			`{"decision_point_outcome":{"type":"create_steps","step_names":[]}}`},
		{"outcome beside other fields", d.DecisionWithOutcome(protocol.CreateSteps("even_batch_analyzer"),
			map[string]any{"route_type": "even_dominant", "decision_point_outcome": "overridden"}),
			`{"route_type":"even_dominant","decision_point_outcome":{"type":"create_steps","step_names":["even_batch_analyzer"]}}`},
		{"skip branches", d.SkipBranches("no items"),
			`{"decision_point_outcome":{"type":"no_branches"},"reason":"no items"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := outputJSON(t, tc.r)
			assertJSONEqual(t, out, []byte(tc.want))
			// The orchestrator's extraction accepts it.
			if _, ok, err := protocol.DecisionOutcomeFromResult(out); !ok || err != nil {
				t.Fatalf("orchestrator cannot read the outcome: %v %v", ok, err)
			}
		})
	}
	f := d.DecisionFailure("missing amount", false, WithCode("MISSING_AMOUNT"))
	if f.Error.ErrorType != ErrorTypeDecision || f.Retryable() || f.Error.Code != "MISSING_AMOUNT" {
		t.Fatalf("DecisionFailure: %+v", f.Error)
	}
}

func TestCreateCursorRanges(t *testing.T) {
	type rng struct{ start, end int }
	tests := []struct {
		total, batch, max int
		want              []rng
	}{
		{1000, 300, 0, []rng{{0, 300}, {300, 600}, {600, 900}, {900, 1000}}},
		{1000, 100, 5, []rng{{0, 200}, {200, 400}, {400, 600}, {600, 800}, {800, 1000}}},
		{1000, 200, 5, []rng{{0, 200}, {200, 400}, {400, 600}, {600, 800}, {800, 1000}}},
		{5000, 1000, 10, []rng{{0, 1000}, {1000, 2000}, {2000, 3000}, {3000, 4000}, {4000, 5000}}},
		{10, 3, 2, []rng{{0, 5}, {5, 10}}},
		{7, 0, 0, []rng{{0, 7}}},
		{7, 100, 0, []rng{{0, 7}}},
		{0, 10, 0, nil},
		{-3, 10, 0, nil},
	}
	for _, tc := range tests {
		got := CreateCursorRanges(tc.total, tc.batch, tc.max)
		if len(got) != len(tc.want) {
			t.Errorf("(%d,%d,%d): %d ranges, want %d", tc.total, tc.batch, tc.max, len(got), len(tc.want))
			continue
		}
		for i, w := range tc.want {
			want := fmt.Sprintf(`{"batch_id":"%03d","start_cursor":%d,"end_cursor":%d,"batch_size":%d}`, i+1, w.start, w.end, w.end-w.start)
			assertJSONEqual(t, mustMarshal(t, got[i]), []byte(want))
		}
	}
}

func TestCreateCursorConfigs(t *testing.T) {
	got := CreateCursorConfigs(1000, 3)
	assertJSONEqual(t, mustMarshal(t, got), []byte(`[
		{"batch_id":"001","start_cursor":0,"end_cursor":334,"batch_size":334},
		{"batch_id":"002","start_cursor":334,"end_cursor":668,"batch_size":334},
		{"batch_id":"003","start_cursor":668,"end_cursor":1000,"batch_size":332}]`))
	// The Rust example analyzer for 1500 items, batch 1000, 10 workers: W=2, S=750.
	assertJSONEqual(t, mustMarshal(t, CreateCursorConfigs(1500, 2)), []byte(`[
		{"batch_id":"001","start_cursor":0,"end_cursor":750,"batch_size":750},
		{"batch_id":"002","start_cursor":750,"end_cursor":1500,"batch_size":750}]`))
	if n := len(CreateCursorConfigs(2, 5)); n != 2 {
		t.Fatalf("more workers than items: %d configs", n)
	}
	if n := len(CreateCursorConfigs(5, 0)); n != 0 {
		t.Fatal("zero workers")
	}
}

func TestBatchAnalyzerResults(t *testing.T) {
	var b Batchable
	configs := b.CreateCursorRanges(1000, 200, 5)
	r := b.BatchAnalyzerSuccess("process_csv_batch", configs, 1000, map[string]any{"csv_file_path": "/data/products.csv"})
	out := outputJSON(t, r)
	assertJSONEqual(t, out, []byte(`{"csv_file_path":"/data/products.csv","worker_count":5,"total_items":1000,
		"batch_processing_outcome":{"type":"create_batches","worker_template_name":"process_csv_batch","worker_count":5,"total_items":1000,
		"cursor_configs":[
			{"batch_id":"001","start_cursor":0,"end_cursor":200,"batch_size":200},
			{"batch_id":"002","start_cursor":200,"end_cursor":400,"batch_size":200},
			{"batch_id":"003","start_cursor":400,"end_cursor":600,"batch_size":200},
			{"batch_id":"004","start_cursor":600,"end_cursor":800,"batch_size":200},
			{"batch_id":"005","start_cursor":800,"end_cursor":1000,"batch_size":200}]}}`))
	o, ok, err := protocol.BatchOutcomeFromResult(out)
	if !ok || err != nil || o.WorkerCount != uint32(len(o.CursorConfigs)) {
		t.Fatalf("orchestrator view: %+v %v %v", o, ok, err)
	}
	if r.Metadata["batch_analyzer"] != true {
		t.Fatal("analyzer metadata")
	}

	empty := b.BatchAnalyzerSuccess("process_csv_batch", nil, 0, map[string]any{"total_rows": 0})
	assertJSONEqual(t, outputJSON(t, empty), []byte(`{"batch_processing_outcome":{"type":"no_batches"},"reason":"empty_dataset","total_rows":0}`))
	assertJSONEqual(t, outputJSON(t, b.NoBatchesResult("dataset_too_small", map[string]any{"dataset_size": 500})),
		[]byte(`{"batch_processing_outcome":{"type":"no_batches"},"reason":"dataset_too_small","dataset_size":500}`))
}

const batchInputs = `{"operation":"transform","cursor":{"batch_id":"002","start_cursor":1000,"end_cursor":2000,"batch_size":1000},
	"batch_metadata":{"cursor_field":"id","failure_strategy":"fail_fast"},"is_no_op":false,"__template_step_name":"process_batch"}`

func TestBatchWorkerContext(t *testing.T) {
	var b Batchable
	s := newStep(withInputs(batchInputs))
	bc, err := b.BatchContext(s)
	if err != nil {
		t.Fatal(err)
	}
	start, end, err := bc.Range()
	if err != nil || start != 1000 || end != 2000 || bc.BatchID() != "002" || bc.BatchMetadata.FailureStrategy != protocol.FailFast ||
		bc.BatchMetadata.CursorField != "id" || bc.IsNoOp || bc.TemplateStepName != "process_batch" || bc.HasCheckpoint() {
		t.Fatalf("context: %+v %d %d %v", bc, start, end, err)
	}
	if pos, err := bc.ResumeFrom(); err != nil || pos != 1000 {
		t.Fatalf("ResumeFrom without checkpoint = %d %v", pos, err)
	}
	if _, ok := b.HandleNoOpWorker(s); ok {
		t.Fatal("a real worker is not a no-op")
	}

	resumed := newStep(withInputs(batchInputs), withCheckpoint(`{"cursor":1500,"items_processed":500}`))
	bc, _ = BatchContext(resumed)
	if pos, err := bc.ResumeFrom(); err != nil || pos != 1500 || !bc.HasCheckpoint() {
		t.Fatalf("ResumeFrom with checkpoint = %d %v", pos, err)
	}

	for _, in := range []string{"", `{"operation":"x"}`, `{"cursor":null}`} {
		var opts []seqOpt
		if in != "" {
			opts = append(opts, withInputs(in))
		}
		if _, err := BatchContext(newStep(opts...)); Classify(err).Code != "MISSING_BATCH_CONTEXT" {
			t.Errorf("inputs %q: %v", in, err)
		}
	}
	if _, err := BatchContext(newStep(withInputs(`{"cursor":{"batch_id":7}}`))); Classify(err).Code != "INVALID_BATCH_CONTEXT" {
		t.Errorf("mistyped inputs: %v", err)
	}
	strCursor, _ := BatchContext(newStep(withInputs(`{"cursor":{"batch_id":"001","start_cursor":"a","end_cursor":"b","batch_size":1}}`)))
	if _, _, err := strCursor.Range(); Classify(err).Code != "INVALID_BATCH_CURSOR" {
		t.Errorf("string cursor Range: %v", err)
	}
}

func TestNoOpWorker(t *testing.T) {
	inputs := `{"cursor":{"batch_id":"000","start_cursor":0,"end_cursor":0,"batch_size":0},
		"batch_metadata":{"cursor_field":"id","failure_strategy":"continue_on_failure"},"is_no_op":true,"__template_step_name":"process_batch"}`
	r, ok := HandleNoOpWorker(newStep(withInputs(inputs)))
	if !ok || !r.IsSuccess() {
		t.Fatalf("no-op: %v %+v", ok, r)
	}
	var out map[string]any
	_ = json.Unmarshal(outputJSON(t, r), &out)
	if out["batch_id"] != "000" || out["no_op"] != true || out["processed_count"] != float64(0) || out["processed_at"] == "" {
		t.Fatalf("no-op output: %v", out)
	}
}

func TestBatchWorkerResults(t *testing.T) {
	assertJSONEqual(t, outputJSON(t, BatchWorkerSuccess(200, nil)), []byte(`{"items_processed":200,"items_succeeded":200,
		"items_failed":0,"items_skipped":0,"last_cursor":null,"batch_metadata":{}}`))
	r := BatchWorkerResult(BatchWorkerOutcome{ItemsProcessed: 10, ItemsSucceeded: 8, ItemsFailed: 2, LastCursor: 10,
		BatchMetadata: map[string]any{"running_total": 55}, Results: []int{1, 2}, Errors: []any{map[string]any{"item": 3}}})
	assertJSONEqual(t, outputJSON(t, r), []byte(`{"items_processed":10,"items_succeeded":8,"items_failed":2,"items_skipped":0,
		"last_cursor":10,"batch_metadata":{"running_total":55},"results":[1,2],"errors":[{"item":3}]}`))
	if r.Metadata["batch_worker"] != true {
		t.Fatal("worker metadata")
	}
}

func TestAggregation(t *testing.T) {
	var errs []string
	for i := range 120 {
		errs = append(errs, fmt.Sprintf(`{"i":%d}`, i))
	}
	s := newStep(
		withDep("analyze_csv", `{"batch_processing_outcome":{"type":"create_batches","worker_template_name":"process_csv_batch","worker_count":2,"cursor_configs":[],"total_items":300}}`),
		withDep("process_csv_batch_001", `{"items_processed":200,"items_succeeded":190,"items_failed":10,"items_skipped":0,"errors":[`+strings.Join(errs, ",")+`]}`),
		withDep("process_csv_batch_002", `{"items_processed":100,"items_succeeded":100,"items_failed":0,"items_skipped":5}`),
		withDep("process_csv_batch_003", `"not an object"`),
		withDep("unrelated", `{"items_processed":1000}`),
	)
	var b Batchable
	agg := b.AggregateWorkerResults(s, "process_csv_batch_")
	if agg.TotalProcessed != 300 || agg.TotalSucceeded != 290 || agg.TotalFailed != 10 || agg.TotalSkipped != 5 ||
		agg.BatchCount != 3 || agg.ErrorCount != 120 || len(agg.Errors) != 100 || len(agg.WorkerResults) != 3 {
		t.Fatalf("aggregate: %+v", agg)
	}
	if agg.SuccessRate < 0.966 || agg.SuccessRate > 0.967 {
		t.Fatalf("success rate %v", agg.SuccessRate)
	}
	keys := map[string]json.RawMessage{}
	_ = json.Unmarshal(mustMarshal(t, agg), &keys)
	for _, k := range []string{"total_processed", "total_succeeded", "total_failed", "total_skipped", "batch_count", "success_rate", "errors", "error_count"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("aggregate JSON lacks %s", k)
		}
	}
	if _, ok := keys["WorkerResults"]; ok {
		t.Error("worker results must not be serialized")
	}
	if empty := AggregateWorkerResults(newStep(), "x_"); empty.BatchCount != 0 || empty.SuccessRate != 0 || string(mustMarshal(t, empty.Errors)) != "[]" {
		t.Fatalf("empty aggregate: %+v", empty)
	}

	sc, err := b.DetectAggregationScenario(s, "analyze_csv", "process_csv_batch_")
	if err != nil || sc.NoBatches || sc.WorkerCount != 3 || strings.Join(sc.WorkerNames(), ",") != "process_csv_batch_001,process_csv_batch_002,process_csv_batch_003" {
		t.Fatalf("with batches: %+v %v", sc, err)
	}
	noBatches := newStep(withDep("analyze_dataset", `{"batch_processing_outcome":{"type":"no_batches"},"dataset_size":50}`),
		withDep("process_batch_000", `{"no_op":true}`))
	sc, err = DetectAggregationScenario(noBatches, "analyze_dataset", "process_batch_")
	if err != nil || !sc.NoBatches || sc.WorkerCount != 0 || !strings.Contains(string(sc.BatchableResult), `"dataset_size":50`) {
		t.Fatalf("no batches: %+v %v", sc, err)
	}
	if _, err := DetectAggregationScenario(noBatches, "missing", "p_"); Classify(err).Code != "MISSING_BATCHABLE_DEPENDENCY" {
		t.Fatalf("missing batchable: %v", err)
	}
	if _, err := DetectAggregationScenario(s, "analyze_csv", "nobody_"); Classify(err).Code != "NO_BATCH_WORKERS" {
		t.Fatalf("no workers: %v", err)
	}
}

// checkpointWorker processes items one by one and yields every perYield items, like the
// checkpoint_yield E2E worker.
type checkpointWorker struct {
	Batchable
	Checkpoint
	perYield int
}

func (w checkpointWorker) Call(_ context.Context, s *StepContext) Result {
	bc, err := w.BatchContext(s)
	if err != nil {
		return ErrorResult(err)
	}
	pos, err := bc.ResumeFrom()
	if err != nil {
		return ErrorResult(err)
	}
	_, end, _ := bc.Range()
	acc, _, _ := DecodeAccumulatedResults[map[string]int64](s)
	if acc == nil {
		acc = map[string]int64{"running_total": 0}
	}
	done := 0
	for ; pos < end; pos++ {
		if done == w.perYield {
			return w.Yield(pos, s.CheckpointItemsProcessed()+uint64(done), acc)
		}
		acc["running_total"] += pos + 1
		done++
	}
	return w.BatchWorkerResult(BatchWorkerOutcome{ItemsProcessed: int64(s.CheckpointItemsProcessed()) + int64(done),
		ItemsSucceeded: int64(s.CheckpointItemsProcessed()) + int64(done), LastCursor: end, BatchMetadata: map[string]any{"running_total": acc["running_total"]}})
}

func TestCheckpointYieldLoop(t *testing.T) {
	// Drive the handler the way the worker does: persist each yield and run again with it.
	inputs := `{"cursor":{"batch_id":"001","start_cursor":0,"end_cursor":100,"batch_size":100},
		"batch_metadata":{"cursor_field":"id","failure_strategy":"fail_fast"},"is_no_op":false}`
	seq := newSeq(withInputs(inputs))
	h := checkpointWorker{perYield: 25}
	yields := 0
	var final Result
	for range 10 {
		r := Run(context.Background(), h, NewStepContext(seq))
		if !r.IsCheckpointYield() {
			final = r
			break
		}
		yields++
		data, err := r.Checkpoint.YieldData(testStepUUID)
		if err != nil {
			t.Fatal(err)
		}
		seq.WorkflowStep.Checkpoint = mustMarshal(t, data)
	}
	if yields != 3 || !final.IsSuccess() {
		t.Fatalf("yields=%d final=%+v", yields, final)
	}
	assertJSONEqual(t, outputJSON(t, final), []byte(`{"items_processed":100,"items_succeeded":100,"items_failed":0,"items_skipped":0,
		"last_cursor":100,"batch_metadata":{"running_total":5050}}`))
}

func TestEmbeddedCapabilitiesCompose(t *testing.T) {
	// All four capabilities embed together without ambiguous selectors.
	type all struct {
		API
		Decision
		Batchable
		Checkpoint
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	var h all
	h.BaseURL = closed.URL
	if h.SkipBranches("x").Kind != KindSuccess || h.Yield(1, 1, nil).Kind != KindCheckpointYield ||
		len(h.CreateCursorRanges(10, 5, 0)) != 2 || h.APIResult(&APIResponse{StatusCode: 204}).Kind != KindSuccess {
		t.Fatal("embedded capability methods")
	}
	_, err := h.Get(context.Background(), "/", nil)
	if err == nil {
		t.Fatal("request to a closed server must fail")
	}
	var se *StepError
	if errors.As(err, &se) {
		t.Fatalf("transport errors are left for Classify, got %v", se)
	}
}
