package exhandlers

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/protocol"
)

const csvAnalyzerInit = `{"batch_size":200,"max_workers":5,"worker_template_name":"process_csv_batch"}`

func productsPath(t *testing.T, name string) string {
	t.Helper()
	dir := DataDir()
	if dir == "" {
		t.Fatal("DataDir: examples/data/products.csv not found")
	}
	return filepath.Join(dir, name)
}

// workerInputs is the workflow_steps.inputs the orchestrator gives a batch worker.
func workerInputs(t *testing.T, cfg protocol.CursorConfig, noOp bool, init string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(init), &m); err != nil {
		t.Fatal(err)
	}
	merged, err := protocol.BatchWorkerInputs{Cursor: cfg, IsNoOp: noOp,
		BatchMetadata: protocol.BatchMetadata{CursorField: "row_number", FailureStrategy: protocol.ContinueOnFailure}}.MergeInto(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(mustMarshal(t, merged))
}

func TestAnalyzeCSVCreatesFiveBatches(t *testing.T) {
	csvPath := productsPath(t, "products.csv")
	ctx := fmt.Sprintf(`{"csv_file_path":%q,"analysis_mode":"inventory"}`, csvPath)
	out := output(t, call(t, "batch_csv.analyze_csv", withContext(ctx), withInit(csvAnalyzerInit)))
	assertJSON(t, out, fmt.Sprintf(`{
		"batch_processing_outcome":{"type":"create_batches","worker_template_name":"process_csv_batch","worker_count":5,
			"cursor_configs":[
				{"batch_id":"001","start_cursor":1,"end_cursor":201,"batch_size":200},
				{"batch_id":"002","start_cursor":201,"end_cursor":401,"batch_size":200},
				{"batch_id":"003","start_cursor":401,"end_cursor":601,"batch_size":200},
				{"batch_id":"004","start_cursor":601,"end_cursor":801,"batch_size":200},
				{"batch_id":"005","start_cursor":801,"end_cursor":1001,"batch_size":200}],
			"total_items":1000},
		"worker_count":5,"actual_batch_size":200,"total_rows":1000,"csv_file_path":%q}`, csvPath))
	// The orchestrator parses the outcome with serde's rules.
	o, found, err := protocol.BatchOutcomeFromResult(out)
	if !found || err != nil || o.WorkerCount != 5 {
		t.Fatalf("outcome %+v %v %v", o, found, err)
	}
}

func TestAnalyzeCSVSplits(t *testing.T) {
	dir := t.TempDir()
	header := "id,title,description,category,price,discountPercentage,rating,stock,brand,sku,weight\n"
	for _, c := range []struct {
		rows       int
		newline    bool
		wantW      int
		wantPer    int
		lastCursor string
	}{
		{1001, true, 5, 201, `{"batch_id":"005","start_cursor":805,"end_cursor":1002,"batch_size":197}`},
		{450, false, 3, 150, `{"batch_id":"003","start_cursor":301,"end_cursor":451,"batch_size":150}`},
		{200, true, 1, 200, `{"batch_id":"001","start_cursor":1,"end_cursor":201,"batch_size":200}`},
	} {
		p := filepath.Join(dir, fmt.Sprintf("p%d.csv", c.rows))
		body := header + strings.TrimSuffix(strings.Repeat("1,t,d,c,1,0,1,1,b,s,1\n", c.rows), "\n")
		if c.newline {
			body += "\n"
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		out := output(t, call(t, "batch_csv.analyze_csv", withContext(fmt.Sprintf(`{"csv_file_path":%q}`, p)), withInit(csvAnalyzerInit)))
		if num(t, out, "worker_count") != strconv.Itoa(c.wantW) || num(t, out, "actual_batch_size") != strconv.Itoa(c.wantPer) ||
			num(t, out, "total_rows") != strconv.Itoa(c.rows) {
			t.Errorf("%d rows: %s", c.rows, out)
		}
		cfgs := path(t, out, "batch_processing_outcome", "cursor_configs").([]any)
		assertJSON(t, mustMarshal(t, cfgs[len(cfgs)-1]), c.lastCursor)
	}
}

func TestAnalyzeCSVNoBatches(t *testing.T) {
	empty := productsPath(t, "products_empty.csv")
	out := output(t, call(t, "batch_csv.analyze_csv", withContext(fmt.Sprintf(`{"csv_file_path":%q}`, empty)), withInit(csvAnalyzerInit)))
	assertJSON(t, out, fmt.Sprintf(`{"batch_processing_outcome":{"type":"no_batches"},"reason":"dataset_too_small","total_rows":0,"csv_file_path":%q}`, empty))

	assertFailure(t, call(t, "batch_csv.analyze_csv", withInit(csvAnalyzerInit)), "MISSING_CONTEXT_FIELD", "ValidationError", false)
	r := call(t, "batch_csv.analyze_csv", withContext(`{"csv_file_path":"/nonexistent/products.csv"}`), withInit(csvAnalyzerInit))
	if !r.IsFailure() || !r.Retryable() {
		t.Errorf("missing file: want a retryable failure, got %+v", r)
	}
}

// The products.csv expectations of README "Batch over a CSV" (tasker-core's values).
var wantCategoryCounts = `{"beauty":50,"fragrances":50,"furniture":50,"groceries":270,"home-decoration":50,
	"kitchen-accessories":300,"laptops":50,"mens-shirts":50,"mens-shoes":50,"mens-watches":60,"mobile-accessories":20}`

func TestCSVWorkersAndAggregate(t *testing.T) {
	csvPath := productsPath(t, "products.csv")
	analyzer := output(t, call(t, "batch_csv.analyze_csv", withContext(fmt.Sprintf(`{"csv_file_path":%q}`, csvPath)), withInit(csvAnalyzerInit)))
	o, _, err := protocol.BatchOutcomeFromResult(analyzer)
	if err != nil {
		t.Fatal(err)
	}
	aggOpts := []stepOpt{withDep("analyze_csv", string(analyzer)), withContext(`{}`)}
	for _, cfg := range o.CursorConfigs {
		name := "process_csv_batch_" + cfg.BatchID
		out := output(t, call(t, "batch_csv.process_csv_batch", withName(name), withDep("analyze_csv", string(analyzer)),
			withInputs(workerInputs(t, cfg, false, `{"operation":"inventory_analysis"}`))))
		if num(t, out, "processed_count") != "200" || num(t, out, "total_inventory_value") != "7117609.3999999985" ||
			num(t, out, "max_price") != "13999.99" || path(t, out, "max_price_product") != "Rolex Submariner Watch" ||
			path(t, out, "batch_id") != cfg.BatchID || num(t, out, "start_row") != string(cfg.StartCursor) || num(t, out, "end_row") != string(cfg.EndCursor) {
			t.Errorf("%s: %s", name, out)
		}
		if avg, _ := strconv.ParseFloat(num(t, out, "average_rating"), 64); math.Abs(avg-3.8517) > 5e-5 {
			t.Errorf("%s average_rating %v", name, avg)
		}
		counts := decoded(t, mustMarshal(t, path(t, out, "category_counts"))).(map[string]any)
		if counts["groceries"] != json.Number("54") || counts["mens-watches"] != json.Number("12") || len(counts) != 11 {
			t.Errorf("%s category_counts %v", name, counts)
		}
		aggOpts = append(aggOpts, withDep(name, string(out)))
	}
	agg := output(t, call(t, "batch_csv.aggregate_csv_results", append(aggOpts, withInit(`{"aggregation_type":"inventory_metrics"}`))...))
	if num(t, agg, "total_processed") != "1000" || num(t, agg, "worker_count") != "5" ||
		num(t, agg, "total_inventory_value") != "35588046.99999999" || num(t, agg, "max_price") != "13999.99" ||
		path(t, agg, "max_price_product") != "Rolex Submariner Watch" {
		t.Errorf("aggregate: %s", agg)
	}
	if avg, _ := strconv.ParseFloat(num(t, agg, "overall_average_rating"), 64); math.Abs(avg-3.8517) > 5e-5 {
		t.Errorf("overall_average_rating %v", avg)
	}
	assertJSON(t, mustMarshal(t, path(t, agg, "category_counts")), wantCategoryCounts)
}

func TestCSVPlaceholderAndNoBatchesAggregate(t *testing.T) {
	analyzer := fmt.Sprintf(`{"batch_processing_outcome":{"type":"no_batches"},"reason":"dataset_too_small","total_rows":0,"csv_file_path":%q}`,
		productsPath(t, "products_empty.csv"))
	worker := output(t, call(t, "batch_csv.process_csv_batch", withName("process_csv_batch_000"), withDep("analyze_csv", analyzer),
		withInputs(workerInputs(t, protocol.NoOpCursorConfig(), true, `{}`))))
	assertJSON(t, worker, `{"no_op":true,"reason":"NoBatches scenario","batch_id":"000"}`)
	agg := output(t, call(t, "batch_csv.aggregate_csv_results", withDep("analyze_csv", analyzer), withDep("process_csv_batch_000", string(worker))))
	assertJSON(t, agg, `{"total_processed":0,"total_inventory_value":0,"category_counts":{},"max_price":0,"max_price_product":null,
		"overall_average_rating":0,"worker_count":0}`)

	r := call(t, "batch_csv.aggregate_csv_results", withDep("analyze_csv", `{"batch_processing_outcome":{"type":"create_batches"}}`))
	assertFailure(t, r, "NO_BATCH_WORKERS", "permanent_error", false)
	assertFailure(t, call(t, "batch_csv.process_csv_batch"), "MISSING_BATCH_CONTEXT", "permanent_error", false)
}

func TestAnalyzeDataset(t *testing.T) {
	init := withInit(`{"batch_size":1000,"max_workers":10,"worker_template_name":"process_batch"}`)
	for _, n := range []int{0, 50, 500, 999} {
		out := output(t, call(t, "batch_dataset.analyze_dataset", init, withContext(fmt.Sprintf(`{"dataset_size":%d}`, n))))
		assertJSON(t, out, fmt.Sprintf(`{"batch_processing_outcome":{"type":"no_batches"},"reason":"dataset_too_small","dataset_size":%d}`, n))
	}
	out := output(t, call(t, "batch_dataset.analyze_dataset", init, withContext(`{"dataset_size":5000}`)))
	var cfgs []string
	for i := range 5 {
		cfgs = append(cfgs, fmt.Sprintf(`{"batch_id":"%03d","start_cursor":%d,"end_cursor":%d,"batch_size":1000}`, i+1, i*1000, (i+1)*1000))
	}
	assertJSON(t, out, `{"batch_processing_outcome":{"type":"create_batches","worker_template_name":"process_batch","worker_count":5,
		"cursor_configs":[`+strings.Join(cfgs, ",")+`],"total_items":5000},"worker_count":5,"actual_batch_size":1000,"total_items":5000}`)
	for n, want := range map[int][3]string{
		1500:   {"2", "750", `{"batch_id":"002","start_cursor":750,"end_cursor":1500,"batch_size":750}`},
		1000:   {"1", "1000", `{"batch_id":"001","start_cursor":0,"end_cursor":1000,"batch_size":1000}`},
		25000:  {"10", "2500", `{"batch_id":"010","start_cursor":22500,"end_cursor":25000,"batch_size":2500}`},
		10_001: {"10", "1001", `{"batch_id":"010","start_cursor":9009,"end_cursor":10001,"batch_size":992}`},
	} {
		out := output(t, call(t, "batch_dataset.analyze_dataset", init, withContext(fmt.Sprintf(`{"dataset_size":%d}`, n))))
		cfgs := path(t, out, "batch_processing_outcome", "cursor_configs").([]any)
		if num(t, out, "worker_count") != want[0] || num(t, out, "actual_batch_size") != want[1] || strconv.Itoa(len(cfgs)) != want[0] {
			t.Errorf("N=%d: %s", n, out)
		}
		assertJSON(t, mustMarshal(t, cfgs[len(cfgs)-1]), want[2])
	}
	for _, ctx := range []string{`{}`, `{"dataset_size":-1}`, `{"dataset_size":"10"}`} {
		assertFailure(t, call(t, "batch_dataset.analyze_dataset", init, withContext(ctx)), "MISSING_CONTEXT_FIELD", "ValidationError", false)
	}
}

func TestDatasetWorkersAndAggregate(t *testing.T) {
	for n, want := range map[int][3]string{1500: {"1500", "2", "16"}, 5000: {"5000", "5", "50"}} {
		ctx := withContext(fmt.Sprintf(`{"dataset_size":%d}`, n))
		analyzer := output(t, call(t, "batch_dataset.analyze_dataset", ctx, withInit(`{"batch_size":1000,"max_workers":10}`)))
		o, _, err := protocol.BatchOutcomeFromResult(analyzer)
		if err != nil {
			t.Fatal(err)
		}
		opts := []stepOpt{ctx, withDep("analyze_dataset", string(analyzer)), withInit(`{"aggregation_type":"sum"}`)}
		for _, cfg := range o.CursorConfigs {
			out := output(t, call(t, "batch_dataset.process_batch", withName("process_batch_"+cfg.BatchID),
				withInputs(workerInputs(t, cfg, false, `{"operation":"transform","checkpoint_interval":100}`))))
			size := int(cfg.BatchSize)
			assertJSON(t, out, fmt.Sprintf(`{"processed_count":%d,"checkpoint_count":%d,"start_position":%s,"end_position":%s,"final_position":%s,"batch_id":%q}`,
				size, (size+99)/100, cfg.StartCursor, cfg.EndCursor, cfg.EndCursor, cfg.BatchID))
			opts = append(opts, withDep("process_batch_"+cfg.BatchID, string(out)))
		}
		agg := output(t, call(t, "batch_dataset.aggregate_results", opts...))
		assertJSON(t, agg, fmt.Sprintf(`{"total_processed":%s,"worker_count":%s,"total_checkpoints":%s,"aggregation_type":"sum","validation_passed":true}`,
			want[0], want[1], want[2]))
	}
}

func TestDatasetNoBatchesAndMismatch(t *testing.T) {
	for _, n := range []int{50, 500} {
		ctx := withContext(fmt.Sprintf(`{"dataset_size":%d}`, n))
		analyzer := output(t, call(t, "batch_dataset.analyze_dataset", ctx, withInit(`{"batch_size":1000,"max_workers":10}`)))
		worker := output(t, call(t, "batch_dataset.process_batch", withName("process_batch_000"),
			withInputs(workerInputs(t, protocol.NoOpCursorConfig(), true, `{"operation":"transform"}`))))
		assertJSON(t, worker, `{"no_op":true,"reason":"NoBatches scenario - no items to process","batch_id":"000"}`)
		agg := output(t, call(t, "batch_dataset.aggregate_results", ctx, withDep("analyze_dataset", string(analyzer)),
			withDep("process_batch_000", string(worker))))
		assertJSON(t, agg, fmt.Sprintf(`{"total_processed":%d,"worker_count":0,"total_checkpoints":0,"aggregation_type":"sum","validation_passed":true}`, n))
	}
	analyzer := `{"batch_processing_outcome":{"type":"create_batches"},"total_items":2000}`
	ser := assertFailure(t, call(t, "batch_dataset.aggregate_results", withContext(`{"dataset_size":2000}`), withDep("analyze_dataset", analyzer),
		withDep("process_batch_001", `{"processed_count":1000,"checkpoint_count":10}`)), "AGGREGATION_MISMATCH", "ValidationError", false)
	if string(ser.Metadata.Context["expected"]) != "2000" || string(ser.Metadata.Context["actual"]) != "1000" {
		t.Errorf("mismatch context %v", ser.Metadata.Context)
	}
}
