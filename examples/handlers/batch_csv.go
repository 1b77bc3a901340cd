package exhandlers

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
)

// Batch over a CSV file (README "Batch over a CSV"): analyze_csv counts the data rows of the
// file named by the context's csv_file_path and splits them into at most max_workers batches of
// batch_size rows (1-based cursors, end exclusive); each process_csv_batch_NNN computes
// inventory metrics over its rows; aggregate_csv_results merges them.

const (
	csvAnalyzerStep   = "analyze_csv"
	csvWorkerTemplate = "process_csv_batch"
	csvWorkerPrefix   = csvWorkerTemplate + "_"
)

// countLines counts lines the way Rust's BufRead::lines does: a final line without a newline
// counts, an empty file has none.
func countLines(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	pending := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			pending = true
			if chunk[len(chunk)-1] == '\n' {
				n++
				pending = false
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			if pending {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// positiveConfig is a positive integer handler.initialization entry, or def.
func positiveConfig(step *handlers.StepContext, key string, def int64) int64 {
	if v := configInt(step, key, def); v > 0 {
		return v
	}
	return def
}

func analyzeCSV(_ context.Context, step *handlers.StepContext) handlers.Result {
	path, ok := inputStringStrict(step, "csv_file_path")
	if !ok {
		return validationFailure("Missing required field: csv_file_path", "MISSING_CONTEXT_FIELD", map[string]any{"field": "csv_file_path"})
	}
	batchSize := positiveConfig(step, "batch_size", 200)
	maxWorkers := positiveConfig(step, "max_workers", 5)
	templateName := configString(step, "worker_template_name", csvWorkerTemplate)

	f, err := os.Open(path)
	if err != nil {
		return handlers.ErrorResult(fmt.Errorf("open %s: %w", path, err))
	}
	defer f.Close()
	lines, err := countLines(f)
	if err != nil {
		return handlers.ErrorResult(fmt.Errorf("read %s: %w", path, err))
	}
	totalRows := max(lines-1, 0)

	if totalRows < batchSize {
		return handlers.Success(map[string]any{
			protocol.BatchOutcomeKey: protocol.NoBatches(),
			"reason":                 "dataset_too_small",
			"total_rows":             totalRows,
			"csv_file_path":          path,
		}, map[string]any{"batching_decision": "no_batches"})
	}
	workers := min(ceilDiv(totalRows, batchSize), maxWorkers)
	per := ceilDiv(totalRows, workers)
	configs := make([]protocol.CursorConfig, 0, workers)
	for i := range workers {
		start := i*per + 1
		end := min((i+1)*per, totalRows) + 1
		configs = append(configs, protocol.IntCursorConfig(protocol.BatchIDForIndex(int(i)), start, end))
	}
	return handlers.Success(map[string]any{
		protocol.BatchOutcomeKey: protocol.CreateBatches(templateName, configs, uint64(totalRows)),
		"worker_count":           workers,
		"actual_batch_size":      per,
		"total_rows":             totalRows,
		"csv_file_path":          path,
	}, map[string]any{"batching_decision": "create_batches", "csv_file": path})
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// productColumns are the columns a CSV batch worker reads.
var productColumns = []string{"title", "category", "price", "rating", "stock"}

// csvBatchMetrics are one worker's inventory metrics.
type csvBatchMetrics struct {
	ProcessedCount      int64            `json:"processed_count"`
	TotalInventoryValue float64          `json:"total_inventory_value"`
	CategoryCounts      map[string]int64 `json:"category_counts"`
	MaxPrice            float64          `json:"max_price"`
	MaxPriceProduct     *string          `json:"max_price_product"`
	AverageRating       float64          `json:"average_rating"`
	BatchID             string           `json:"batch_id"`
	StartRow            int64            `json:"start_row"`
	EndRow              int64            `json:"end_row"`
}

// processCSVRows reads the data rows start ≤ row < end (1-based) of the CSV at path.
func processCSVRows(path string, start, end int64) (csvBatchMetrics, error) {
	m := csvBatchMetrics{CategoryCounts: map[string]int64{}, StartRow: start, EndRow: end}
	f, err := os.Open(path)
	if err != nil {
		return m, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return m, handlers.PermanentError(fmt.Sprintf("read CSV header of %s", path)).WithCode("INVALID_CSV").Wrap(err)
	}
	col := map[string]int{}
	for i, name := range head {
		col[name] = i
	}
	for _, name := range productColumns {
		if _, ok := col[name]; !ok {
			return m, handlers.PermanentError(fmt.Sprintf("CSV %s has no %q column", path, name)).WithCode("INVALID_CSV")
		}
	}
	totalRating := 0.0
	for row := int64(1); row < end; row++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, handlers.PermanentError(fmt.Sprintf("read CSV row %d of %s", row, path)).WithCode("INVALID_CSV_ROW").Wrap(err)
		}
		if row < start {
			continue
		}
		price, err1 := strconv.ParseFloat(rec[col["price"]], 64)
		rating, err2 := strconv.ParseFloat(rec[col["rating"]], 64)
		stock, err3 := strconv.ParseUint(rec[col["stock"]], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return m, handlers.PermanentError(fmt.Sprintf("invalid CSV row %d of %s", row, path)).WithCode("INVALID_CSV_ROW").Wrap(err)
		}
		m.TotalInventoryValue += price * float64(stock)
		m.CategoryCounts[rec[col["category"]]]++
		if price > m.MaxPrice {
			m.MaxPrice = price
			title := rec[col["title"]]
			m.MaxPriceProduct = &title
		}
		totalRating += rating
		m.ProcessedCount++
	}
	if m.ProcessedCount > 0 {
		m.AverageRating = totalRating / float64(m.ProcessedCount)
	}
	return m, nil
}

// noOpWorker is the success of the placeholder worker created for a no_batches outcome.
func noOpWorker(bc *handlers.BatchWorkerContext, reason string) handlers.Result {
	return handlers.Success(map[string]any{"no_op": true, "reason": reason, "batch_id": bc.BatchID()},
		map[string]any{"no_op": true})
}

func processCSVBatch(_ context.Context, step *handlers.StepContext) handlers.Result {
	bc, err := handlers.BatchContext(step)
	if err != nil {
		return handlers.ErrorResult(err)
	}
	if bc.IsNoOp {
		return noOpWorker(bc, "NoBatches scenario")
	}
	path, err := handlers.DecodeDependencyField[string](step, csvAnalyzerStep, "csv_file_path")
	if err != nil {
		return handlers.ErrorResult(err)
	}
	start, end, err := bc.Range()
	if err != nil {
		return handlers.ErrorResult(err)
	}
	m, err := processCSVRows(path, start, end)
	if err != nil {
		return handlers.ErrorResult(err)
	}
	m.BatchID = bc.BatchID()
	return handlers.Success(m, map[string]any{"batch_id": m.BatchID, "processed_count": m.ProcessedCount})
}

func aggregateCSVResults(_ context.Context, step *handlers.StepContext) handlers.Result {
	scenario, err := handlers.DetectAggregationScenario(step, csvAnalyzerStep, csvWorkerPrefix)
	if err != nil {
		return handlers.ErrorResult(err)
	}
	var (
		totalProcessed int64
		totalValue     float64
		counts         = map[string]int64{}
		maxPrice       float64
		maxProduct     *string
		ratingSum      float64
	)
	if scenario.NoBatches {
		if v, ok := decodeValue(scenario.BatchableResult); ok {
			if n, ok := asUint64(field(v, "total_rows")); ok {
				totalProcessed = int64(n)
			}
		}
	}
	for _, name := range scenario.WorkerNames() {
		v, ok := decodeValue(scenario.WorkerResults[name])
		if !ok {
			continue
		}
		processed, _ := asUint64(field(v, "processed_count"))
		value, _ := asFloat64(field(v, "total_inventory_value"))
		batchMax, _ := asFloat64(field(v, "max_price"))
		avg, _ := asFloat64(field(v, "average_rating"))
		if cc, ok := field(v, "category_counts").(map[string]any); ok {
			for cat, c := range cc {
				n, _ := asUint64(c)
				counts[cat] += int64(n)
			}
		}
		totalProcessed += int64(processed)
		totalValue += value
		ratingSum += avg * float64(processed)
		if batchMax > maxPrice {
			maxPrice = batchMax
			maxProduct = nil
			if s, ok := asString(field(v, "max_price_product")); ok {
				maxProduct = &s
			}
		}
	}
	overall := 0.0
	if totalProcessed > 0 && !scenario.NoBatches {
		overall = ratingSum / float64(totalProcessed)
	}
	return handlers.Success(map[string]any{
		"total_processed":        totalProcessed,
		"total_inventory_value":  totalValue,
		"category_counts":        counts,
		"max_price":              maxPrice,
		"max_price_product":      maxProduct,
		"overall_average_rating": overall,
		"worker_count":           scenario.WorkerCount,
	}, map[string]any{"worker_count": scenario.WorkerCount, "total_products": totalProcessed})
}

func csvHandlers() []entry {
	return []entry{
		{"batch_csv.analyze_csv", handlers.HandlerFunc(analyzeCSV)},
		{"batch_csv.process_csv_batch", handlers.HandlerFunc(processCSVBatch)},
		{"batch_csv.aggregate_csv_results", handlers.HandlerFunc(aggregateCSVResults)},
	}
}
