package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
)

// Keys under StepExecutionResult.result where the orchestrator looks for outcomes.
const (
	DecisionOutcomeKey = "decision_point_outcome"
	BatchOutcomeKey    = "batch_processing_outcome"
)

// DecisionOutcomeType is the "type" tag of a DecisionPointOutcome.
type DecisionOutcomeType string

// Decision outcome tags (serde snake_case).
const (
	DecisionNoBranches  DecisionOutcomeType = "no_branches"
	DecisionCreateSteps DecisionOutcomeType = "create_steps"
)

// DecisionPointOutcome is the value a decision step puts at result.decision_point_outcome:
// {"type":"no_branches"} or {"type":"create_steps","step_names":[...]}.
type DecisionPointOutcome struct {
	Type      DecisionOutcomeType
	StepNames []string // create_steps only
}

// NoBranches returns the outcome that creates no steps.
func NoBranches() DecisionPointOutcome { return DecisionPointOutcome{Type: DecisionNoBranches} }

// CreateSteps returns the outcome that creates the named template steps.
func CreateSteps(stepNames ...string) DecisionPointOutcome {
	return DecisionPointOutcome{Type: DecisionCreateSteps, StepNames: append([]string{}, stepNames...)}
}

// MarshalJSON writes the serde internally-tagged form; step_names is always an array for
// create_steps and absent for no_branches.
func (o DecisionPointOutcome) MarshalJSON() ([]byte, error) {
	switch o.Type {
	case DecisionNoBranches:
		return []byte(`{"type":"no_branches"}`), nil
	case DecisionCreateSteps:
		names := o.StepNames
		if names == nil {
			names = []string{}
		}
		return json.Marshal(struct {
			Type      DecisionOutcomeType `json:"type"`
			StepNames []string            `json:"step_names"`
		}{o.Type, names})
	}
	return nil, fmt.Errorf("protocol: unknown decision outcome type %q", o.Type)
}

// UnmarshalJSON accepts what serde accepts: a known type tag, and step_names (required) for
// create_steps.
func (o *DecisionPointOutcome) UnmarshalJSON(data []byte) error {
	var raw struct {
		Type      *string          `json:"type"`
		StepNames *json.RawMessage `json:"step_names"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("protocol: decision outcome: %w", err)
	}
	if raw.Type == nil {
		return errors.New(`protocol: decision outcome: missing field "type"`)
	}
	switch DecisionOutcomeType(*raw.Type) {
	case DecisionNoBranches:
		*o = NoBranches()
		return nil
	case DecisionCreateSteps:
		if raw.StepNames == nil || isNull(*raw.StepNames) {
			return errors.New(`protocol: decision outcome: create_steps needs "step_names"`)
		}
		var names []string
		if err := json.Unmarshal(*raw.StepNames, &names); err != nil {
			return fmt.Errorf("protocol: decision outcome: step_names: %w", err)
		}
		*o = CreateSteps(names...)
		return nil
	}
	return fmt.Errorf("protocol: decision outcome: unknown type %q", *raw.Type)
}

// BatchOutcomeType is the "type" tag of a BatchProcessingOutcome.
type BatchOutcomeType string

// Batch outcome tags (serde snake_case).
const (
	BatchNoBatches     BatchOutcomeType = "no_batches"
	BatchCreateBatches BatchOutcomeType = "create_batches"
)

// CursorConfig is one batch worker's range. Cursors may be any JSON (number, string, object);
// StartCursor is inclusive and EndCursor exclusive by convention.
type CursorConfig struct {
	BatchID     string          `json:"batch_id"`
	StartCursor json.RawMessage `json:"start_cursor"`
	EndCursor   json.RawMessage `json:"end_cursor"`
	BatchSize   uint32          `json:"batch_size"`
}

// IntCursorConfig returns a cursor config over the integer range [start, end) with
// batch_size = end − start.
func IntCursorConfig(batchID string, start, end int64) CursorConfig {
	size := end - start
	if size < 0 {
		size = 0
	}
	return CursorConfig{
		BatchID:     batchID,
		StartCursor: json.RawMessage(strconv.FormatInt(start, 10)),
		EndCursor:   json.RawMessage(strconv.FormatInt(end, 10)),
		BatchSize:   uint32(size),
	}
}

// NoOpBatchID is the batch id of the placeholder worker the orchestrator creates for no_batches.
const NoOpBatchID = "000"

// NoOpCursorConfig is the placeholder worker's cursor: {"batch_id":"000","start_cursor":0,
// "end_cursor":0,"batch_size":0}.
func NoOpCursorConfig() CursorConfig { return IntCursorConfig(NoOpBatchID, 0, 0) }

// BatchIDForIndex formats the 0-based worker index i as tasker-core's batch id, %03d of i+1.
func BatchIDForIndex(i int) string { return fmt.Sprintf("%03d", i+1) }

// MarshalJSON writes null for nil cursors.
func (c CursorConfig) MarshalJSON() ([]byte, error) {
	type plain CursorConfig
	p := plain(c)
	if len(p.StartCursor) == 0 {
		p.StartCursor = json.RawMessage(`null`)
	}
	if len(p.EndCursor) == 0 {
		p.EndCursor = json.RawMessage(`null`)
	}
	return json.Marshal(p)
}

// BatchProcessingOutcome is the value a batchable step puts at result.batch_processing_outcome:
// {"type":"no_batches"} or {"type":"create_batches","worker_template_name",...}.
type BatchProcessingOutcome struct {
	Type               BatchOutcomeType
	WorkerTemplateName string         // create_batches only
	WorkerCount        uint32         // create_batches only; should equal len(CursorConfigs)
	CursorConfigs      []CursorConfig // create_batches only
	TotalItems         uint64         // create_batches only
}

// NoBatches returns the outcome that creates only the no-op placeholder worker.
func NoBatches() BatchProcessingOutcome { return BatchProcessingOutcome{Type: BatchNoBatches} }

// CreateBatches returns a create_batches outcome with worker_count = len(configs).
func CreateBatches(workerTemplateName string, configs []CursorConfig, totalItems uint64) BatchProcessingOutcome {
	return BatchProcessingOutcome{
		Type:               BatchCreateBatches,
		WorkerTemplateName: workerTemplateName,
		WorkerCount:        uint32(len(configs)),
		CursorConfigs:      append([]CursorConfig{}, configs...),
		TotalItems:         totalItems,
	}
}

type createBatchesJSON struct {
	Type               BatchOutcomeType `json:"type"`
	WorkerTemplateName string           `json:"worker_template_name"`
	WorkerCount        uint32           `json:"worker_count"`
	CursorConfigs      []CursorConfig   `json:"cursor_configs"`
	TotalItems         uint64           `json:"total_items"`
}

// MarshalJSON writes the serde internally-tagged form.
func (o BatchProcessingOutcome) MarshalJSON() ([]byte, error) {
	switch o.Type {
	case BatchNoBatches:
		return []byte(`{"type":"no_batches"}`), nil
	case BatchCreateBatches:
		configs := o.CursorConfigs
		if configs == nil {
			configs = []CursorConfig{}
		}
		return json.Marshal(createBatchesJSON{o.Type, o.WorkerTemplateName, o.WorkerCount, configs, o.TotalItems})
	}
	return nil, fmt.Errorf("protocol: unknown batch outcome type %q", o.Type)
}

// UnmarshalJSON accepts what serde accepts: a known tag and, for create_batches, all four fields.
func (o *BatchProcessingOutcome) UnmarshalJSON(data []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("protocol: batch outcome: %w", err)
	}
	var typ string
	if t, ok := obj["type"]; !ok || json.Unmarshal(t, &typ) != nil {
		return errors.New(`protocol: batch outcome: missing or invalid "type"`)
	}
	switch BatchOutcomeType(typ) {
	case BatchNoBatches:
		*o = NoBatches()
		return nil
	case BatchCreateBatches:
		for _, k := range []string{"worker_template_name", "worker_count", "cursor_configs", "total_items"} {
			if v, ok := obj[k]; !ok || isNull(v) {
				return fmt.Errorf("protocol: batch outcome: create_batches needs %q", k)
			}
		}
		var c createBatchesJSON
		if err := json.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("protocol: batch outcome: %w", err)
		}
		*o = BatchProcessingOutcome{
			Type:               BatchCreateBatches,
			WorkerTemplateName: c.WorkerTemplateName,
			WorkerCount:        c.WorkerCount,
			CursorConfigs:      c.CursorConfigs,
			TotalItems:         c.TotalItems,
		}
		return nil
	}
	return fmt.Errorf("protocol: batch outcome: unknown type %q", typ)
}

// DecisionOutcomeFromResult extracts result.decision_point_outcome. ok is false when result is
// not an object or has no such key; err is set when the key is present but unparseable (the
// orchestrator logs a warning and creates nothing in both cases).
func DecisionOutcomeFromResult(result json.RawMessage) (outcome DecisionPointOutcome, ok bool, err error) {
	v, ok := resultField(result, DecisionOutcomeKey)
	if !ok {
		return DecisionPointOutcome{}, false, nil
	}
	if err := json.Unmarshal(v, &outcome); err != nil {
		return DecisionPointOutcome{}, true, err
	}
	return outcome, true, nil
}

// BatchOutcomeFromResult extracts result.batch_processing_outcome, with the same conventions
// as DecisionOutcomeFromResult.
func BatchOutcomeFromResult(result json.RawMessage) (outcome BatchProcessingOutcome, ok bool, err error) {
	v, ok := resultField(result, BatchOutcomeKey)
	if !ok {
		return BatchProcessingOutcome{}, false, nil
	}
	if err := json.Unmarshal(v, &outcome); err != nil {
		return BatchProcessingOutcome{}, true, err
	}
	return outcome, true, nil
}

func resultField(result json.RawMessage, key string) (json.RawMessage, bool) {
	t := bytes.TrimSpace(result)
	if len(t) == 0 || t[0] != '{' {
		return nil, false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(t, &obj) != nil {
		return nil, false
	}
	v, ok := obj[key]
	return v, ok
}

// FailureStrategy is batch_metadata.failure_strategy (serde snake_case).
type FailureStrategy string

// Failure strategies; ContinueOnFailure is the template default.
const (
	ContinueOnFailure FailureStrategy = "continue_on_failure"
	FailFast          FailureStrategy = "fail_fast"
	Isolate           FailureStrategy = "isolate"
)

// BatchMetadata is BatchWorkerInputs.batch_metadata, copied from the worker template's
// batch_config.
type BatchMetadata struct {
	CursorField     string          `json:"cursor_field"`
	FailureStrategy FailureStrategy `json:"failure_strategy"`
}

// TemplateStepNameKey is the workflow_steps.inputs key naming the template step of a dynamically
// created step; hydration resolves the step definition through it.
const TemplateStepNameKey = "__template_step_name"

// BatchWorkerInputs is what the orchestrator merges into a batch worker's workflow_steps.inputs
// (on top of the template's handler.initialization).
type BatchWorkerInputs struct {
	Cursor           CursorConfig  `json:"cursor"`
	BatchMetadata    BatchMetadata `json:"batch_metadata"`
	IsNoOp           bool          `json:"is_no_op"`
	TemplateStepName string        `json:"__template_step_name,omitempty"`
}

// MergeInto returns initialization (not modified) overlaid with these inputs' keys: the
// workflow_steps.inputs value of a batch worker created from a template.
func (b BatchWorkerInputs) MergeInto(initialization map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	data, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("protocol: batch worker inputs: %w", err)
	}
	var own map[string]json.RawMessage
	if err := json.Unmarshal(data, &own); err != nil {
		return nil, fmt.Errorf("protocol: batch worker inputs: %w", err)
	}
	out := make(map[string]json.RawMessage, len(initialization)+len(own))
	maps.Copy(out, initialization)
	maps.Copy(out, own)
	return out, nil
}
