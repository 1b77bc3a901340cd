package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tasker-go/tasker/protocol"
)

// Batchable is the batch-processing capability; embed it in analyzer, worker and aggregator
// handler structs.
type Batchable struct{}

// CreateCursorRanges splits [0, totalItems) into consecutive integer ranges of batchSize items
// (0-based, end exclusive), batch ids "001", "002", …. When maxWorkers > 0 and more ranges than
// that would be needed, the batch size grows to ceil(totalItems/maxWorkers) so that at most
// maxWorkers ranges result. batchSize <= 0 means one range. totalItems <= 0 gives none.
// Example: 1000 items, batch 300 → [0,300) [300,600) [600,900) [900,1000).
func CreateCursorRanges(totalItems, batchSize, maxWorkers int) []protocol.CursorConfig {
	if totalItems <= 0 {
		return []protocol.CursorConfig{}
	}
	if batchSize <= 0 || batchSize > totalItems {
		batchSize = totalItems
	}
	if maxWorkers > 0 && ceilDiv(totalItems, batchSize) > maxWorkers {
		batchSize = ceilDiv(totalItems, maxWorkers)
	}
	configs := make([]protocol.CursorConfig, 0, ceilDiv(totalItems, batchSize))
	for start := 0; start < totalItems; start += batchSize {
		end := min(start+batchSize, totalItems)
		configs = append(configs, protocol.IntCursorConfig(protocol.BatchIDForIndex(len(configs)), int64(start), int64(end)))
	}
	return configs
}

// CreateCursorConfigs splits [0, totalItems) into workerCount near-equal ranges of
// ceil(totalItems/workerCount) items (fewer when the last would be empty). With
// workerCount = min(ceil(N/B), M) this is the split tasker-core's Rust example analyzers use.
func CreateCursorConfigs(totalItems, workerCount int) []protocol.CursorConfig {
	if totalItems <= 0 || workerCount <= 0 {
		return []protocol.CursorConfig{}
	}
	per := ceilDiv(totalItems, workerCount)
	configs := make([]protocol.CursorConfig, 0, workerCount)
	for i := range workerCount {
		start := i * per
		if start >= totalItems {
			break
		}
		configs = append(configs, protocol.IntCursorConfig(protocol.BatchIDForIndex(i), int64(start), int64(min(start+per, totalItems))))
	}
	return configs
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// BatchAnalyzerSuccess is an analyzer's success: fields plus
// {"batch_processing_outcome":{"type":"create_batches",…},"worker_count":n,"total_items":t}.
// With no configs it is NoBatchesResult("empty_dataset", fields) instead.
func BatchAnalyzerSuccess(workerTemplateName string, configs []protocol.CursorConfig, totalItems uint64, fields map[string]any) Result {
	if len(configs) == 0 {
		return NoBatchesResult("empty_dataset", fields)
	}
	value := make(map[string]any, len(fields)+3)
	maps.Copy(value, fields)
	value[protocol.BatchOutcomeKey] = protocol.CreateBatches(workerTemplateName, configs, totalItems)
	value["worker_count"] = len(configs)
	value["total_items"] = totalItems
	return Success(value, map[string]any{"batch_analyzer": true})
}

// NoBatchesResult is an analyzer's success when there is nothing to split:
// fields plus {"batch_processing_outcome":{"type":"no_batches"},"reason":reason}. The
// orchestrator then creates one no-op worker, which requires the batchable step's
// handler.initialization.worker_template_name.
func NoBatchesResult(reason string, fields map[string]any) Result {
	value := make(map[string]any, len(fields)+2)
	maps.Copy(value, fields)
	value[protocol.BatchOutcomeKey] = protocol.NoBatches()
	if reason != "" {
		value["reason"] = reason
	}
	return Success(value, map[string]any{"batch_analyzer": true})
}

// BatchWorkerContext is a batch worker's assignment read from its step inputs, plus its
// checkpoint for resumption.
type BatchWorkerContext struct {
	protocol.BatchWorkerInputs
	step *StepContext
}

// BatchContext reads the batch worker inputs the orchestrator stored in the step's inputs. A step
// without them fails with a PermanentError coded MISSING_BATCH_CONTEXT.
func BatchContext(step *StepContext) (*BatchWorkerContext, error) {
	cursor, ok := step.StepInput("cursor")
	if !ok || bytes.Equal(bytes.TrimSpace(cursor), []byte("null")) {
		return nil, PermanentError("step inputs have no batch cursor; is this a batch worker?").WithCode("MISSING_BATCH_CONTEXT")
	}
	var in protocol.BatchWorkerInputs
	if err := json.Unmarshal(step.StepInputs(), &in); err != nil {
		return nil, PermanentError("invalid batch worker inputs").WithCode("INVALID_BATCH_CONTEXT").Wrap(err)
	}
	return &BatchWorkerContext{BatchWorkerInputs: in, step: step}, nil
}

// BatchID is the cursor's batch id.
func (b *BatchWorkerContext) BatchID() string { return b.Cursor.BatchID }

// Range decodes integer start and end cursors.
func (b *BatchWorkerContext) Range() (start, end int64, err error) {
	if err := json.Unmarshal(b.Cursor.StartCursor, &start); err != nil {
		return 0, 0, PermanentError("start_cursor is not an integer").WithCode("INVALID_BATCH_CURSOR").Wrap(err)
	}
	if err := json.Unmarshal(b.Cursor.EndCursor, &end); err != nil {
		return 0, 0, PermanentError("end_cursor is not an integer").WithCode("INVALID_BATCH_CURSOR").Wrap(err)
	}
	return start, end, nil
}

// ResumeFrom is the integer position to start at: the checkpoint cursor when one exists,
// otherwise the start cursor.
func (b *BatchWorkerContext) ResumeFrom() (int64, error) {
	if pos, ok, err := DecodeCheckpointCursor[int64](b.step); ok || err != nil {
		return pos, err
	}
	start, _, err := b.Range()
	return start, err
}

// HasCheckpoint reports whether the worker is resuming from a checkpoint.
func (b *BatchWorkerContext) HasCheckpoint() bool { return b.step.HasCheckpoint() }

// HandleNoOpWorker returns the immediate success a placeholder worker (is_no_op, created for a
// no_batches outcome) must report, and true; for a real worker it returns false.
func HandleNoOpWorker(step *StepContext) (Result, bool) {
	raw, ok := step.StepInput("is_no_op")
	var noop bool
	if !ok || json.Unmarshal(raw, &noop) != nil || !noop {
		return Result{}, false
	}
	batchID := ""
	if bc, err := BatchContext(step); err == nil {
		batchID = bc.BatchID()
	}
	return Success(map[string]any{
		"batch_id":        batchID,
		"no_op":           true,
		"processed_count": 0,
		"message":         "No batches to process",
		"processed_at":    time.Now().UTC().Format(time.RFC3339Nano),
	}, map[string]any{"batch_worker": true}), true
}

// BatchWorkerOutcome is a batch worker's summary output (the cross-language shape).
type BatchWorkerOutcome struct {
	ItemsProcessed int64          `json:"items_processed"`
	ItemsSucceeded int64          `json:"items_succeeded"`
	ItemsFailed    int64          `json:"items_failed"`
	ItemsSkipped   int64          `json:"items_skipped"`
	LastCursor     any            `json:"last_cursor"`
	BatchMetadata  map[string]any `json:"batch_metadata"`
	Results        any            `json:"results,omitempty"`
	Errors         []any          `json:"errors,omitempty"`
}

// BatchWorkerSuccess reports processed items, all succeeded, with optional per-item results.
func BatchWorkerSuccess(processed int64, results any) Result {
	return BatchWorkerResult(BatchWorkerOutcome{ItemsProcessed: processed, ItemsSucceeded: processed, Results: results})
}

// BatchWorkerResult reports a full outcome (metadata.custom.batch_worker = true).
func BatchWorkerResult(o BatchWorkerOutcome) Result {
	if o.BatchMetadata == nil {
		o.BatchMetadata = map[string]any{}
	}
	return Success(o, map[string]any{"batch_worker": true})
}

// AggregatedResults summarises batch worker outputs (items_* fields of each worker's result).
type AggregatedResults struct {
	TotalProcessed int64                      `json:"total_processed"`
	TotalSucceeded int64                      `json:"total_succeeded"`
	TotalFailed    int64                      `json:"total_failed"`
	TotalSkipped   int64                      `json:"total_skipped"`
	BatchCount     int                        `json:"batch_count"`
	SuccessRate    float64                    `json:"success_rate"`
	Errors         []json.RawMessage          `json:"errors"`
	ErrorCount     int                        `json:"error_count"`
	WorkerResults  map[string]json.RawMessage `json:"-"`
}

// maxAggregatedErrors bounds AggregatedResults.Errors.
const maxAggregatedErrors = 100

// AggregateWorkerResults sums the outputs of every ancestor whose step name starts with prefix
// (e.g. "process_csv_batch_"); outputs that are not objects count as batches with no items.
func AggregateWorkerResults(step *StepContext, prefix string) AggregatedResults {
	agg := AggregatedResults{Errors: []json.RawMessage{}, WorkerResults: map[string]json.RawMessage{}}
	for _, name := range step.DependencyNames() {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		raw, _ := step.DependencyValue(name)
		agg.WorkerResults[name] = raw
		agg.BatchCount++
		var w struct {
			ItemsProcessed int64             `json:"items_processed"`
			ItemsSucceeded int64             `json:"items_succeeded"`
			ItemsFailed    int64             `json:"items_failed"`
			ItemsSkipped   int64             `json:"items_skipped"`
			Errors         []json.RawMessage `json:"errors"`
		}
		if json.Unmarshal(raw, &w) != nil {
			continue
		}
		agg.TotalProcessed += w.ItemsProcessed
		agg.TotalSucceeded += w.ItemsSucceeded
		agg.TotalFailed += w.ItemsFailed
		agg.TotalSkipped += w.ItemsSkipped
		agg.ErrorCount += len(w.Errors)
		for _, e := range w.Errors {
			if len(agg.Errors) < maxAggregatedErrors {
				agg.Errors = append(agg.Errors, e)
			}
		}
	}
	if agg.TotalProcessed > 0 {
		agg.SuccessRate = float64(agg.TotalSucceeded) / float64(agg.TotalProcessed)
	}
	return agg
}

// BatchAggregationScenario tells a convergence step whether workers ran (WithBatches) or the
// batchable step returned no_batches.
type BatchAggregationScenario struct {
	NoBatches       bool
	BatchableResult json.RawMessage
	WorkerResults   map[string]json.RawMessage
	WorkerCount     int
}

// WorkerNames lists the worker steps found, sorted.
func (s BatchAggregationScenario) WorkerNames() []string {
	return slices.Sorted(maps.Keys(s.WorkerResults))
}

// DetectAggregationScenario inspects the batchable step's output and the worker results (ancestors
// named with workerPrefix), as tasker-core's BatchAggregationScenario::detect does. A missing
// batchable step, or no workers without a no_batches outcome, is a PermanentError.
func DetectAggregationScenario(step *StepContext, batchableStep, workerPrefix string) (BatchAggregationScenario, error) {
	raw, ok := step.DependencyValue(batchableStep)
	if !ok {
		return BatchAggregationScenario{}, PermanentError(fmt.Sprintf("missing batchable step dependency %q", batchableStep)).WithCode("MISSING_BATCHABLE_DEPENDENCY")
	}
	s := BatchAggregationScenario{BatchableResult: raw, WorkerResults: map[string]json.RawMessage{}}
	if o, found, err := protocol.BatchOutcomeFromResult(raw); found && err == nil && o.Type == protocol.BatchNoBatches {
		s.NoBatches = true
		return s, nil
	}
	for _, name := range step.DependencyNames() {
		if strings.HasPrefix(name, workerPrefix) {
			v, _ := step.DependencyValue(name)
			s.WorkerResults[name] = v
		}
	}
	s.WorkerCount = len(s.WorkerResults)
	if s.WorkerCount == 0 {
		return s, PermanentError(fmt.Sprintf("no batch workers with prefix %q and %q did not return no_batches", workerPrefix, batchableStep)).WithCode("NO_BATCH_WORKERS")
	}
	return s, nil
}

// CreateCursorRanges calls the package-level CreateCursorRanges.
func (Batchable) CreateCursorRanges(totalItems, batchSize, maxWorkers int) []protocol.CursorConfig {
	return CreateCursorRanges(totalItems, batchSize, maxWorkers)
}

// CreateCursorConfigs calls the package-level CreateCursorConfigs.
func (Batchable) CreateCursorConfigs(totalItems, workerCount int) []protocol.CursorConfig {
	return CreateCursorConfigs(totalItems, workerCount)
}

// BatchAnalyzerSuccess calls the package-level BatchAnalyzerSuccess.
func (Batchable) BatchAnalyzerSuccess(workerTemplateName string, configs []protocol.CursorConfig, totalItems uint64, fields map[string]any) Result {
	return BatchAnalyzerSuccess(workerTemplateName, configs, totalItems, fields)
}

// NoBatchesResult calls the package-level NoBatchesResult.
func (Batchable) NoBatchesResult(reason string, fields map[string]any) Result {
	return NoBatchesResult(reason, fields)
}

// BatchContext calls the package-level BatchContext.
func (Batchable) BatchContext(step *StepContext) (*BatchWorkerContext, error) {
	return BatchContext(step)
}

// HandleNoOpWorker calls the package-level HandleNoOpWorker.
func (Batchable) HandleNoOpWorker(step *StepContext) (Result, bool) { return HandleNoOpWorker(step) }

// BatchWorkerSuccess calls the package-level BatchWorkerSuccess.
func (Batchable) BatchWorkerSuccess(processed int64, results any) Result {
	return BatchWorkerSuccess(processed, results)
}

// BatchWorkerResult calls the package-level BatchWorkerResult.
func (Batchable) BatchWorkerResult(o BatchWorkerOutcome) Result { return BatchWorkerResult(o) }

// AggregateWorkerResults calls the package-level AggregateWorkerResults.
func (Batchable) AggregateWorkerResults(step *StepContext, prefix string) AggregatedResults {
	return AggregateWorkerResults(step, prefix)
}

// DetectAggregationScenario calls the package-level DetectAggregationScenario.
func (Batchable) DetectAggregationScenario(step *StepContext, batchableStep, workerPrefix string) (BatchAggregationScenario, error) {
	return DetectAggregationScenario(step, batchableStep, workerPrefix)
}
