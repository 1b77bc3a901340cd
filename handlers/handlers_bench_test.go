package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// These benchmarks cover the handler side of one step in the worker: build the StepContext,
// run the handler with panic recovery, read a dependency result and the context, and convert
// the Result into the StepExecutionResult that is persisted.

func BenchmarkToExecutionResultSuccess(b *testing.B) {
	r := Success(map[string]any{"value": 1296, "operation": "square", "step": 2}, map[string]any{"handler": "linear_step_2"})
	b.ReportAllocs()
	for b.Loop() {
		_ = ToExecutionResult(testStepUUID, r, 3*time.Millisecond)
	}
}

func BenchmarkToExecutionResultEmptySuccess(b *testing.B) {
	r := Success(nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = ToExecutionResult(testStepUUID, r, time.Millisecond)
	}
}

func BenchmarkToExecutionResultFailure(b *testing.B) {
	r := Failure("Payment gateway returned 503", ErrorTypeHandler, true, WithCode("HTTP_503"),
		WithContext(map[string]any{"gateway": "stripe", "status": 503}))
	b.ReportAllocs()
	for b.Loop() {
		_ = ToExecutionResult(testStepUUID, r, 1500*time.Millisecond)
	}
}

func BenchmarkToExecutionResultError(b *testing.B) {
	r := ErrorResult(errors.New("boom"))
	b.ReportAllocs()
	for b.Loop() {
		_ = ToExecutionResult(testStepUUID, r, time.Millisecond)
	}
}

// BenchmarkNewStepContext is built once per claimed step (it attaches the step's log attrs).
func BenchmarkNewStepContext(b *testing.B) {
	seq := newSeq(withTaskContext(`{"even_number":6}`), withDep("linear_step_1", `36`))
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.ReportAllocs()
	for b.Loop() {
		_ = NewStepContext(seq, WithLogger(log))
	}
}

// BenchmarkRunSquareHandler runs a handler like the linear example's: read a dependency result,
// square it, return a success; then convert the result.
func BenchmarkRunSquareHandler(b *testing.B) {
	seq := newSeq(withTaskContext(`{"even_number":6}`), withDep("linear_step_1", `36`))
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sc := NewStepContext(seq, WithLogger(log))
	h := HandlerFunc(func(_ context.Context, step *StepContext) Result {
		raw, ok := step.DependencyValue("linear_step_1")
		if !ok {
			return ErrorResult(errors.New("missing dependency"))
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return ErrorResult(err)
		}
		return Success(n*n, nil)
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r := Run(ctx, h, sc)
		if !r.IsSuccess() {
			b.Fatal(r.Error)
		}
		_ = ToExecutionResult(testStepUUID, r, time.Millisecond)
	}
}
