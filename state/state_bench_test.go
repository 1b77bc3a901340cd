package state

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// These benchmarks cover the pure part of every transition: the table lookups and the event
// JSON written into the transition's metadata.

func BenchmarkNextStepState(b *testing.B) {
	ev := StepEventOf(StepEventEnqueueForOrchestration)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NextStepState(StepInProgress, ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNextStepStateInvalid(b *testing.B) {
	ev := StepEventOf(StepEventStart)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NextStepState(StepComplete, ev); err == nil {
			b.Fatal("want an error")
		}
	}
}

func BenchmarkNextTaskState(b *testing.B) {
	ev := StepsEnqueued([]uuid.UUID{uuid.New()})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NextTaskState(TaskEnqueuingSteps, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStepEventMarshalWithResult encodes the worker's completion event (it carries the
// result, as tasker-core's EnqueueForOrchestration(Some(result)) does).
func BenchmarkStepEventMarshalWithResult(b *testing.B) {
	ev := StepEventWithData(StepEventEnqueueForOrchestration, json.RawMessage(`{"step_uuid":"0195b0c2-5e1d-7c3a-9a4e-2f6d8b1c0a11","success":true,"result":{"value":1296},"metadata":{"execution_time_ms":3}}`))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStepEventMarshalStart(b *testing.B) {
	ev := StepEventOf(StepEventStart)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTaskEventMarshalStepsEnqueued(b *testing.B) {
	ev := StepsEnqueued([]uuid.UUID{uuid.New(), uuid.New()})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeUUIDParam* show what pgx does with a uuid.UUID query argument: google/uuid
// implements driver.Valuer, so pgx formats it as text and parses it back (allocating an encode
// error on the way) before writing 16 bytes; a [16]byte takes the direct path.
func BenchmarkEncodeUUIDParamGoogleUUID(b *testing.B) {
	m, id := pgtype.NewMap(), uuid.New()
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, id, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeUUIDParamBytes(b *testing.B) {
	m, id := pgtype.NewMap(), [16]byte(uuid.New())
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, id, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
