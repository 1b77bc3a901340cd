package protocol

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
)

// These benchmarks cover the pure-Go work of one step's hot path: the worker decodes the queue
// message, hydrates the TaskSequenceStep (dependency results, template step definitions),
// encodes its result; the orchestrator decodes that result strictly.

func benchData(b *testing.B, name string) []byte {
	b.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

var benchMessage = []byte(`{"task_uuid":"0195b0c2-0000-7000-8000-000000000001","step_uuid":"0195b0c2-0000-7000-8000-000000000010","correlation_id":"0195b0c2-0000-7000-8000-000000000003"}`)

func BenchmarkDecodeStepMessage(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeStepMessage(benchMessage); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeStepMessage(b *testing.B) {
	m := StepMessage{TaskUUID: uuid.New(), StepUUID: uuid.New(), CorrelationID: uuid.New()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeStepExecutionResultSuccess(b *testing.B) {
	worker, host := "worker_0195b0c2-0000-7000-8000-00000000abcd", "bench-host"
	r := Success(goldenStep, json.RawMessage(`{"order_id":12345,"validated":true}`), 3, nil)
	r.Metadata.WorkerID, r.Metadata.WorkerHostname = &worker, &host
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeStepExecutionResultFailure(b *testing.B) {
	ctx := map[string]json.RawMessage{"handler_name": json.RawMessage(`"charge_card"`)}
	r := Failure(goldenStep, "Payment gateway returned 503", "handler_error", "HTTP_503", true, 1500, ctx)
	r.EnsureOrchestrationMetadata().Headers[RetryAfterHeader] = "30"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStepExecutionResult is the worker's decode of one dependency result.
func BenchmarkDecodeStepExecutionResult(b *testing.B) {
	data := benchData(b, "result_success.json")
	b.ReportAllocs()
	for b.Loop() {
		var r StepExecutionResult
		if err := json.Unmarshal(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStepExecutionResultStrict is the orchestrator's strict decode of a result.
func BenchmarkDecodeStepExecutionResultStrict(b *testing.B) {
	data := benchData(b, "result_success.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeStepExecutionResultStrict(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTaskSequenceStep is the hydration decode: the full handler input with a
// dependency result and a step definition.
func BenchmarkDecodeTaskSequenceStep(b *testing.B) {
	data := benchData(b, "task_sequence_step.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var s TaskSequenceStep
		if err := json.Unmarshal(data, &s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeTaskSequenceStep(b *testing.B) {
	var s TaskSequenceStep
	if err := json.Unmarshal(benchData(b, "task_sequence_step.json"), &s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStepDefinitions is the worker's template-cache fill: the step definitions of a
// named task's configuration (done once per template version, not per step).
func BenchmarkDecodeStepDefinitions(b *testing.B) {
	var s TaskSequenceStep
	if err := json.Unmarshal(benchData(b, "task_sequence_step.json"), &s); err != nil {
		b.Fatal(err)
	}
	cfg, err := json.Marshal(map[string]any{"steps": []StepDefinition{s.StepDefinition, s.StepDefinition, s.StepDefinition, s.StepDefinition}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var t struct {
			Steps []StepDefinition `json:"steps"`
		}
		if err := json.Unmarshal(cfg, &t); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNaiveTimeString(b *testing.B) {
	t := NewNaiveTime(time.Date(2026, 3, 21, 21, 16, 8, 123456789, time.UTC))
	b.ReportAllocs()
	for b.Loop() {
		_ = t.String()
	}
}
