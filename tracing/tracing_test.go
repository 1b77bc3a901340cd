package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
)

var testAttrs = StepAttrs{
	TaskUUID:      uuid.MustParse("0190a000-0000-7000-8000-000000000001"),
	StepUUID:      uuid.MustParse("0190a000-0000-7000-8000-000000000002"),
	CorrelationID: uuid.MustParse("0190a000-0000-7000-8000-000000000003"),
	Namespace:     "billing",
	Handler:       "charge_card",
	StepName:      "charge",
	Attempt:       2,
}

func recorderTracer(t *testing.T) (*Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return New(tp), rec
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestTracingDisabledIsNoop(t *testing.T) {
	SetDefault(nil)
	ctx := context.Background()
	headers := json.RawMessage(`{"traceparent":"00-` + parentTrace + `-` + parentSpan + `-01"}`)
	got, end := StartStep(ctx, headers, testAttrs)
	if got != ctx {
		t.Fatal("disabled StartStep changed the context")
	}
	if trace.SpanContextFromContext(got).IsValid() {
		t.Fatal("disabled StartStep put a span in the context")
	}
	end(false, errors.New("boom")) // must not panic
	if Enabled() {
		t.Fatal("Enabled() with no tracer")
	}
	var nilTracer *Tracer
	if got, _ := nilTracer.StartStep(ctx, headers, testAttrs); got != ctx {
		t.Fatal("nil tracer changed the context")
	}
}

// TestTracingDisabledAllocatesNothing proves the hot path costs no allocation when tracing is off.
func TestTracingDisabledAllocatesNothing(t *testing.T) {
	SetDefault(nil)
	ctx := context.Background()
	headers := json.RawMessage(`{"traceparent":"00-` + parentTrace + `-` + parentSpan + `-01"}`)
	attrs := testAttrs
	allocs := testing.AllocsPerRun(1000, func() {
		c, end := StartStep(ctx, headers, attrs)
		end(true, nil)
		_ = c
	})
	if allocs != 0 {
		t.Fatalf("disabled StartStep allocates %v times per call", allocs)
	}
}

func TestTracingSpanAttributesAndRemoteParent(t *testing.T) {
	tr, rec := recorderTracer(t)
	headers := json.RawMessage(`{"x-other":1,"traceparent":"00-` + parentTrace + `-` + parentSpan + `-01","tracestate":"vendor=abc"}`)
	ctx, end := tr.StartStep(context.Background(), headers, testAttrs)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.TraceID().String() != parentTrace {
		t.Fatalf("span context %v does not continue trace %s", sc, parentTrace)
	}
	// A handler's own span is a child of the step span.
	_, child := tr.tracer.Start(ctx, "handler work")
	child.End()
	end(true, nil)

	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want 2", len(ended))
	}
	step := ended[1]
	if step.Name() != SpanName || step.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("span %q kind %v", step.Name(), step.SpanKind())
	}
	if step.Parent().SpanID().String() != parentSpan || !step.Parent().IsRemote() || step.Parent().TraceState().Get("vendor") != "abc" {
		t.Fatalf("parent = %+v", step.Parent())
	}
	if ended[0].Parent().SpanID() != step.SpanContext().SpanID() {
		t.Fatal("handler span is not a child of the step span")
	}
	want := map[string]string{
		AttrTaskUUID: testAttrs.TaskUUID.String(), AttrStepUUID: testAttrs.StepUUID.String(),
		AttrCorrelationID: testAttrs.CorrelationID.String(), AttrNamespace: "billing", AttrHandler: "charge_card",
		AttrStepName: "charge", AttrAttempt: "2", AttrSuccess: "true",
	}
	got := attrMap(step.Attributes())
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
	if step.Status().Code != codes.Ok {
		t.Fatalf("status = %+v", step.Status())
	}
}

func TestTracingFailureStatus(t *testing.T) {
	tr, rec := recorderTracer(t)
	_, end := tr.StartStep(context.Background(), nil, StepAttrs{Namespace: "ns"})
	end(false, errors.New("card declined"))
	_, end = tr.StartStep(context.Background(), nil, StepAttrs{Namespace: "ns"})
	end(false, nil)

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	if s := spans[0].Status(); s.Code != codes.Error || s.Description != "card declined" {
		t.Fatalf("status = %+v", s)
	}
	if ev := spans[0].Events(); len(ev) != 1 || ev[0].Name != "exception" {
		t.Fatalf("events = %+v", ev)
	}
	if s := spans[1].Status(); s.Code != codes.Error || s.Description != "step failed" {
		t.Fatalf("status = %+v", s)
	}
	got := attrMap(spans[1].Attributes())
	if got[AttrSuccess] != "false" || got[AttrNamespace] != "ns" {
		t.Fatalf("attributes = %v", got)
	}
	if _, ok := got[AttrTaskUUID]; ok {
		t.Fatal("a zero task uuid was recorded")
	}
}

func TestTracingIgnoresBadHeaders(t *testing.T) {
	tr, rec := recorderTracer(t)
	for _, h := range []string{``, `null`, `[1]`, `{"traceparent":5}`, `{"traceparent":"garbage"}`, `{"tracestate":"a=b"}`, `{not json`} {
		ctx, end := tr.StartStep(context.Background(), json.RawMessage(h), testAttrs)
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Fatalf("headers %q: no span", h)
		}
		end(true, nil)
	}
	for i, s := range rec.Ended() {
		if s.Parent().IsValid() {
			t.Fatalf("span %d has parent %v from bad headers", i, s.Parent())
		}
	}
	// Header keys are matched case-insensitively.
	if c := traceHeaders(json.RawMessage(`{"TraceParent":"00-` + parentTrace + `-` + parentSpan + `-01"}`)); c["traceparent"] == "" {
		t.Fatal("TraceParent not found")
	}
}

func TestTracingContinuesCallerSpanWithoutHeaders(t *testing.T) {
	tr, rec := recorderTracer(t)
	ctx, parent := tr.tracer.Start(context.Background(), "poll")
	_, end := tr.StartStep(ctx, json.RawMessage(`{}`), testAttrs)
	end(true, nil)
	parent.End()
	if got := rec.Ended()[0].Parent().SpanID(); got != parent.SpanContext().SpanID() {
		t.Fatalf("parent %v, want the caller's span", got)
	}
}

func TestTracingSetupStdout(t *testing.T) {
	var buf syncBuffer
	shutdown, err := Setup(context.Background(), Config{Enabled: true, ServiceName: "svc-test", Exporter: ExporterStdout, Writer: &buf})
	if err != nil {
		t.Fatal(err)
	}
	if !Enabled() {
		t.Fatal("Setup did not install a tracer")
	}
	headers := json.RawMessage(`{"traceparent":"00-` + parentTrace + `-` + parentSpan + `-01"}`)
	ctx, end := StartStep(context.Background(), headers, testAttrs)
	// The OpenTelemetry global continues the step's trace.
	_, child := otel.Tracer("handler").Start(ctx, "inner")
	child.End()
	end(true, nil)
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if Enabled() {
		t.Fatal("shutdown left the tracer installed")
	}
	out := buf.String()
	for _, want := range []string{`"Name":"` + SpanName + `"`, `"Name":"inner"`, parentTrace, `"Value":"svc-test"`, testAttrs.StepUUID.String()} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout export lacks %s:\n%s", want, out)
		}
	}
}

// TestTracingSetupOTLP exports to a collector stand-in on the loopback interface.
func TestTracingSetupOTLP(t *testing.T) {
	var (
		mu    sync.Mutex
		paths []string
		body  []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		body = append(body, b...)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown, err := Setup(ctx, Config{Enabled: true, ServiceName: "otlp-test", Exporter: ExporterOTLP, Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, end := StartStep(ctx, nil, testAttrs)
	end(true, nil)
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "POST /v1/traces" {
		t.Fatalf("collector saw %v", paths)
	}
	if !bytes.Contains(body, []byte(SpanName)) || !bytes.Contains(body, []byte(testAttrs.TaskUUID.String())) {
		t.Fatalf("export body lacks the span: %q", body)
	}
}

func TestTracingSetupDisabledAndUnknown(t *testing.T) {
	shutdown, err := Setup(context.Background(), Config{Enabled: false, Exporter: "anything"})
	if err != nil || Enabled() {
		t.Fatalf("disabled setup: err %v, enabled %v", err, Enabled())
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(context.Background(), Config{Enabled: true, Exporter: "zipkin"}); err == nil || Enabled() {
		t.Fatalf("unknown exporter: err %v", err)
	}
}

func BenchmarkStartStepDisabled(b *testing.B) {
	SetDefault(nil)
	ctx := context.Background()
	headers := json.RawMessage(`{"traceparent":"00-` + parentTrace + `-` + parentSpan + `-01"}`)
	b.ReportAllocs()
	for b.Loop() {
		_, end := StartStep(ctx, headers, testAttrs)
		end(true, nil)
	}
}

func BenchmarkStartStepEnabled(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	defer tp.Shutdown(context.Background())
	tr := New(tp)
	ctx := context.Background()
	headers := json.RawMessage(`{"traceparent":"00-` + parentTrace + `-` + parentSpan + `-01"}`)
	b.ReportAllocs()
	for b.Loop() {
		_, end := tr.StartStep(ctx, headers, testAttrs)
		end(true, nil)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
