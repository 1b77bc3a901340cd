// Package tracing gives the worker an optional OpenTelemetry span per step execution.
//
// Tracing is off unless Setup (or SetDefault) installs a tracer. While it is off, StartStep
// returns the caller's context and a no-op end function without allocating, so the worker can
// call it unconditionally on its hot path.
//
// When on, each step runs inside a consumer span named SpanName carrying the task_uuid,
// step_uuid, correlation_id, namespace, handler, step_name and attempt attributes. A W3C
// traceparent (and tracestate) found in the PGMQ message headers makes the span a child of the
// producer's trace. The span is in the context handed to the handler, so handlers that use
// otel.Tracer create child spans of it.
package tracing

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// SpanName is the name of the span around one step execution.
const SpanName = "tasker.step.execute"

// InstrumentationName names the tracer that creates the step spans.
const InstrumentationName = "github.com/tasker-go/tasker/worker"

// Attribute keys of the step span.
const (
	AttrTaskUUID      = "task_uuid"
	AttrStepUUID      = "step_uuid"
	AttrCorrelationID = "correlation_id"
	AttrNamespace     = "namespace"
	AttrHandler       = "handler"
	AttrStepName      = "step_name"
	AttrAttempt       = "attempt"
	AttrSuccess       = "success"
)

// StepAttrs describe the step a span covers. Zero UUIDs and empty strings are left out.
type StepAttrs struct {
	TaskUUID      uuid.UUID
	StepUUID      uuid.UUID
	CorrelationID uuid.UUID
	Namespace     string
	Handler       string // the handler callable
	StepName      string
	Attempt       int // attempts after the claim; 0 is left out
}

// EndFunc ends a step span: success is the step result's success, err (optional) the error
// that made it fail. It must be called exactly once.
type EndFunc func(success bool, err error)

// Tracer starts step spans. A nil *Tracer is valid and traces nothing.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// New returns a Tracer creating spans from tp, propagating W3C trace context from message
// headers. A nil tp gives a nil (disabled) Tracer.
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{
		tracer: tp.Tracer(InstrumentationName),
		prop:   propagation.TraceContext{},
	}
}

var current atomic.Pointer[Tracer]

// SetDefault installs t as the tracer used by the package-level StartStep; nil disables tracing.
func SetDefault(t *Tracer) { current.Store(t) }

// Default returns the installed tracer, nil when tracing is off.
func Default() *Tracer { return current.Load() }

// Enabled reports whether a tracer is installed.
func Enabled() bool { return current.Load() != nil }

// StartStep starts a step span with the installed tracer; see Tracer.StartStep.
func StartStep(ctx context.Context, headers json.RawMessage, attrs StepAttrs) (context.Context, EndFunc) {
	return current.Load().StartStep(ctx, headers, attrs)
}

func noopEnd(bool, error) {}

// StartStep starts the span of one step execution as a child of the traceparent in headers
// (the PGMQ message headers JSON), or of ctx's span when the headers carry none. Headers that
// are absent, malformed or without a valid traceparent are ignored. On a nil Tracer it returns
// ctx and a no-op EndFunc, without allocating.
func (t *Tracer) StartStep(ctx context.Context, headers json.RawMessage, attrs StepAttrs) (context.Context, EndFunc) {
	if t == nil {
		return ctx, noopEnd
	}
	return t.start(ctx, headers, attrs)
}

func (t *Tracer) start(ctx context.Context, headers json.RawMessage, a StepAttrs) (context.Context, EndFunc) {
	if carrier := traceHeaders(headers); carrier != nil {
		ctx = t.prop.Extract(ctx, carrier)
	}
	kv := make([]attribute.KeyValue, 0, 7)
	addUUID := func(k string, id uuid.UUID) {
		if id != uuid.Nil {
			kv = append(kv, attribute.String(k, id.String()))
		}
	}
	addStr := func(k, v string) {
		if v != "" {
			kv = append(kv, attribute.String(k, v))
		}
	}
	addUUID(AttrTaskUUID, a.TaskUUID)
	addUUID(AttrStepUUID, a.StepUUID)
	addUUID(AttrCorrelationID, a.CorrelationID)
	addStr(AttrNamespace, a.Namespace)
	addStr(AttrHandler, a.Handler)
	addStr(AttrStepName, a.StepName)
	if a.Attempt > 0 {
		kv = append(kv, attribute.Int(AttrAttempt, a.Attempt))
	}
	ctx, span := t.tracer.Start(ctx, SpanName, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(kv...))
	return ctx, func(success bool, err error) {
		span.SetAttributes(attribute.Bool(AttrSuccess, success))
		if err != nil {
			span.RecordError(err)
		}
		switch {
		case success:
			span.SetStatus(codes.Ok, "")
		case err != nil:
			span.SetStatus(codes.Error, err.Error())
		default:
			span.SetStatus(codes.Error, "step failed")
		}
		span.End()
	}
}

// traceHeaders returns the W3C trace context fields of a message's headers JSON, or nil.
func traceHeaders(headers json.RawMessage) propagation.MapCarrier {
	if len(headers) == 0 || headers[0] != '{' {
		return nil
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(headers, &h) != nil {
		return nil
	}
	var out propagation.MapCarrier
	for k, raw := range h {
		var key string
		switch {
		case strings.EqualFold(k, "traceparent"):
			key = "traceparent"
		case strings.EqualFold(k, "tracestate"):
			key = "tracestate"
		default:
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			continue
		}
		if out == nil {
			out = propagation.MapCarrier{}
		}
		out[key] = s
	}
	if out["traceparent"] == "" {
		return nil
	}
	return out
}
