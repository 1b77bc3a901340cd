package handlers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

// TestToExecutionResultRefusesOversized: a result whose payload is over
// protocol.MaxStepResultBytes, whether a success value or a failure's details, becomes a
// non-retryable serialization_error system error naming the size and the limit; a result at the
// limit is kept.
func TestToExecutionResultRefusesOversized(t *testing.T) {
	id := uuid.New()
	big := strings.Repeat("r", protocol.MaxStepResultBytes)
	for _, tc := range []struct {
		name string
		r    Result
		size int64
	}{
		{"success value", Success(big, nil), protocol.MaxStepResultBytes + 2}, // the quotes
		{"success metadata", Success(1, map[string]any{"m": big}), 1 + 1 + protocol.MaxStepResultBytes + 2},
		{"failure message", Failure(big, "", true), 2 + int64(len(ErrorTypeRetryable))*2 + protocol.MaxStepResultBytes},
		{"headers", Success(nil, nil, WithHeader("X-Big", big)), 2 + 5 + protocol.MaxStepResultBytes},
	} {
		res := ToExecutionResult(id, tc.r, time.Second)
		want := fmt.Sprintf("step result is %d bytes; the limit is %d", tc.size, protocol.MaxStepResultBytes)
		if res.Success || res.Status != protocol.StatusError || res.Error == nil || res.Error.Retryable || res.Metadata.Retryable ||
			res.Metadata.ErrorType == nil || *res.Metadata.ErrorType != ErrorTypeSerialization || !strings.Contains(res.Error.Message, want) {
			t.Errorf("%s: got %+v %+v, want a non-retryable %s saying %q", tc.name, res.Metadata, res.Error, ErrorTypeSerialization, want)
		}
		if n := res.PayloadSize(); n > 1024 {
			t.Errorf("%s: the replacement result carries %d bytes of payload", tc.name, n)
		}
	}
	atLimit := ToExecutionResult(id, Success(big[:protocol.MaxStepResultBytes-2], nil), time.Second)
	if !atLimit.Success || len(atLimit.Result) != protocol.MaxStepResultBytes {
		t.Errorf("a %d-byte result was not kept: %+v", protocol.MaxStepResultBytes, atLimit.Error)
	}
}

// TestCheckpointSizeLimit: a checkpoint over protocol.MaxCheckpointBytes is refused by YieldData
// with a *protocol.SizeError, and the failure it becomes is not retryable; other checkpoint
// failures stay retryable.
func TestCheckpointSizeLimit(t *testing.T) {
	id := uuid.New()
	y := Yield(7, 3, strings.Repeat("c", protocol.MaxCheckpointBytes))
	_, err := y.Checkpoint.YieldData(id)
	var se *protocol.SizeError
	if !errors.As(err, &se) || !errors.Is(err, protocol.ErrTooLarge) {
		t.Fatalf("YieldData of an oversized checkpoint = %v, want a *protocol.SizeError", err)
	}
	if se.Size != 1+protocol.MaxCheckpointBytes+2 || se.Limit != protocol.MaxCheckpointBytes {
		t.Errorf("size error %+v", se)
	}
	if r := CheckpointErrorResult(err); r.Retryable() || r.Error.ErrorType != ErrorTypeCheckpoint ||
		!strings.Contains(r.Error.Message, fmt.Sprintf("the limit is %d", protocol.MaxCheckpointBytes)) {
		t.Errorf("oversized checkpoint failure = %+v, want non-retryable %s naming the limit", r.Error, ErrorTypeCheckpoint)
	}
	if r := CheckpointErrorResult(errors.New("connection reset")); !r.Retryable() {
		t.Errorf("a checkpoint write failure is not retryable: %+v", r.Error)
	}
	small := Yield(7, 3, []int{1, 2})
	if d, err := small.Checkpoint.YieldData(id); err != nil || string(d.AccumulatedResults) != "[1,2]" {
		t.Errorf("small checkpoint: %s, %v", d.AccumulatedResults, err)
	}
}
