package exhandlers

import (
	"context"
	"fmt"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
)

// Batch over a counted range (README "Batch over a counted range"): analyze_dataset splits
// [0, dataset_size) into W = min(⌈N/B⌉, M) ranges, or returns no_batches when N < B;
// process_batch_NNN walks its range in chunks of 100; aggregate_results sums and checks the
// total against the context's dataset_size.

const (
	datasetAnalyzerStep = "analyze_dataset"
	datasetWorkerPrefix = "process_batch_"
)

// inputUint64 reads a non-negative integer context field like serde's as_u64.
func inputUint64(step *handlers.StepContext, key string) (uint64, bool) {
	v, ok := inputValue(step, key)
	if !ok {
		return 0, false
	}
	return asUint64(v)
}

func analyzeDataset(_ context.Context, step *handlers.StepContext) handlers.Result {
	n, ok := inputUint64(step, "dataset_size")
	if !ok {
		return validationFailure("Missing required field: dataset_size", "MISSING_CONTEXT_FIELD", map[string]any{"field": "dataset_size"})
	}
	size := int64(min(n, 1<<62))
	batchSize := positiveConfig(step, "batch_size", 1000)
	maxWorkers := positiveConfig(step, "max_workers", 10)
	templateName := configString(step, "worker_template_name", "process_batch")
	if size < batchSize {
		return handlers.Success(map[string]any{
			protocol.BatchOutcomeKey: protocol.NoBatches(),
			"reason":                 "dataset_too_small",
			"dataset_size":           n,
		}, map[string]any{"batching_decision": "no_batches"})
	}
	workers := min(ceilDiv(size, batchSize), maxWorkers)
	configs := handlers.CreateCursorConfigs(int(size), int(workers))
	return handlers.Success(map[string]any{
		protocol.BatchOutcomeKey: protocol.CreateBatches(templateName, configs, n),
		"worker_count":           len(configs),
		"actual_batch_size":      ceilDiv(size, workers),
		"total_items":            n,
	}, map[string]any{"batching_decision": "create_batches", "worker_template": templateName})
}

func processBatch(_ context.Context, step *handlers.StepContext) handlers.Result {
	bc, err := handlers.BatchContext(step)
	if err != nil {
		return handlers.ErrorResult(err)
	}
	if bc.IsNoOp {
		return noOpWorker(bc, "NoBatches scenario - no items to process")
	}
	start, end, err := bc.Range()
	if err != nil {
		return handlers.ErrorResult(err)
	}
	chunk := positiveConfig(step, "checkpoint_interval", 100)
	pos := start
	var processed, checkpoints int64
	for pos < end {
		next := min(pos+chunk, end)
		processed += next - pos
		pos = next
		checkpoints++
	}
	return handlers.Success(map[string]any{
		"processed_count":  processed,
		"checkpoint_count": checkpoints,
		"start_position":   start,
		"end_position":     end,
		"final_position":   pos,
		"batch_id":         bc.BatchID(),
	}, map[string]any{
		"batch_range": fmt.Sprintf("%d-%d", start, end),
		"checkpoints": checkpoints,
		"batch_id":    bc.BatchID(),
	})
}

func aggregateResults(_ context.Context, step *handlers.StepContext) handlers.Result {
	aggregationType := configString(step, "aggregation_type", "sum")
	expected, hasExpected := inputUint64(step, "dataset_size")
	scenario, err := handlers.DetectAggregationScenario(step, datasetAnalyzerStep, datasetWorkerPrefix)
	if err != nil {
		return handlers.ErrorResult(err)
	}
	var total, checkpoints uint64
	if scenario.NoBatches {
		if v, ok := decodeValue(scenario.BatchableResult); ok {
			total, _ = asUint64(field(v, "dataset_size"))
		}
	}
	for _, name := range scenario.WorkerNames() {
		v, ok := decodeValue(scenario.WorkerResults[name])
		if !ok {
			continue
		}
		p, _ := asUint64(field(v, "processed_count"))
		c, _ := asUint64(field(v, "checkpoint_count"))
		total += p
		checkpoints += c
	}
	if hasExpected && total != expected {
		return validationFailure(fmt.Sprintf("Processed count %d does not match expected %d", total, expected),
			"AGGREGATION_MISMATCH", map[string]any{"expected": expected, "actual": total})
	}
	return handlers.Success(map[string]any{
		"total_processed":   total,
		"worker_count":      scenario.WorkerCount,
		"total_checkpoints": checkpoints,
		"aggregation_type":  aggregationType,
		"validation_passed": hasExpected,
	}, map[string]any{"aggregation_type": aggregationType, "worker_count": scenario.WorkerCount})
}

func datasetHandlers() []entry {
	return []entry{
		{"batch_dataset.analyze_dataset", handlers.HandlerFunc(analyzeDataset)},
		{"batch_dataset.process_batch", handlers.HandlerFunc(processBatch)},
		{"batch_dataset.aggregate_results", handlers.HandlerFunc(aggregateResults)},
	}
}
