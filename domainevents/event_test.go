package domainevents

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"testing"

	"github.com/tasker-go/tasker/protocol"
)

func keys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not an object: %s", raw)
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func field(t *testing.T, raw json.RawMessage, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestDEEnvelopeJSONShape checks the envelope against tasker-core's DomainEvent serialization
// (worker-protocol §9.4): the exact key sets at each level, the value formats, and a lossless
// round trip.
func TestDEEnvelopeJSONShape(t *testing.T) {
	step := sampleStep(t, `[{"name":"payment.processed","description":"d","schema":{"type":"object"}}]`, nil, 3)
	res := successResult(step, `{"transaction_id":"TXN-1","amount":99.99}`)
	ec, err := NewStepEventContext(step, res)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvent("payment.processed", ec, res.Result, DefaultPublisherName, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}

	if got, want := keys(t, raw), sorted("event_id", "event_name", "event_version", "payload", "metadata"); !reflect.DeepEqual(got, want) {
		t.Fatalf("top-level keys %v, want %v", got, want)
	}
	var top struct {
		EventID      string `json:"event_id"`
		EventName    string `json:"event_name"`
		EventVersion string `json:"event_version"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	if top.EventName != "payment.processed" || top.EventVersion != "1.0" {
		t.Fatalf("name/version %+v", top)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(top.EventID) {
		t.Fatalf("event_id %q is not a UUID v7", top.EventID)
	}

	payload := field(t, raw, "payload")
	if got, want := keys(t, payload), sorted("task_sequence_step", "execution_result", "payload"); !reflect.DeepEqual(got, want) {
		t.Fatalf("payload keys %v, want %v", got, want)
	}
	tss := field(t, payload, "task_sequence_step")
	if got, want := keys(t, tss), sorted("task", "workflow_step", "dependency_results", "step_definition"); !reflect.DeepEqual(got, want) {
		t.Fatalf("task_sequence_step keys %v, want %v", got, want)
	}
	if got, want := keys(t, field(t, tss, "task")), sorted("task", "task_name", "task_version", "namespace_name"); !reflect.DeepEqual(got, want) {
		t.Fatalf("task keys %v", got)
	}
	// Naive DB timestamps inside the step context have no offset.
	if ca := string(field(t, field(t, field(t, tss, "task"), "task"), "created_at")); ca != `"2026-03-21T21:16:08.123456"` {
		t.Fatalf("task.created_at = %s", ca)
	}
	exec := field(t, payload, "execution_result")
	if err := protocol.ValidateStepExecutionResultJSON(exec); err != nil {
		t.Fatalf("execution_result is not what tasker-core's strict parser accepts: %v", err)
	}
	if string(field(t, payload, "payload")) != `{"transaction_id":"TXN-1","amount":99.99}` {
		t.Fatalf("business payload %s", field(t, payload, "payload"))
	}

	md := field(t, raw, "metadata")
	if got, want := keys(t, md), sorted("task_uuid", "step_uuid", "step_name", "namespace", "correlation_id", "fired_at", "fired_by"); !reflect.DeepEqual(got, want) {
		t.Fatalf("metadata keys %v, want %v", got, want)
	}
	var m map[string]string
	if err := json.Unmarshal(md, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"task_uuid": step.Task.Task.TaskUUID.String(), "step_uuid": step.WorkflowStep.WorkflowStepUUID.String(),
		"step_name": "process_payment", "namespace": "payments",
		"correlation_id": step.Task.Task.CorrelationID.String(), "fired_by": "DefaultDomainEventPublisher",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("metadata.%s = %q, want %q", k, m[k], v)
		}
	}
	// chrono DateTime<Utc>: RFC 3339 in UTC with "Z" and 0, 3, 6 or 9 fraction digits.
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$`).MatchString(m["fired_at"]) {
		t.Fatalf("fired_at %q", m["fired_at"])
	}

	back, err := DecodeEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if string(again) != string(raw) {
		t.Fatalf("round trip changed the envelope\nfirst:  %s\nsecond: %s", raw, again)
	}
	if !back.Metadata.FiredAt.Equal(ev.Metadata.FiredAt) || back.EventID != ev.EventID {
		t.Fatal("round trip lost identity or time")
	}
}

func TestDEEnvelopeNullsAndExtraMetadata(t *testing.T) {
	step := sampleStep(t, `[]`, nil, 3)
	res := failureResult(step, true)
	ec := &StepEventContext{Step: step, Result: res}
	ev, err := NewEvent("payment.failed", ec, nil, "PaymentEventPublisher", map[string]json.RawMessage{
		"payment_processor": json.RawMessage(`"stripe"`),
		"fired_by":          json.RawMessage(`"impostor"`), // cannot override a standard key
	})
	if err != nil {
		t.Fatal(err)
	}
	ev.Metadata.StepUUID, ev.Metadata.StepName = nil, nil
	raw, _ := json.Marshal(ev)
	if p := field(t, field(t, raw, "payload"), "payload"); string(p) != "null" {
		t.Fatalf("nil business payload = %s, want null", p)
	}
	md := field(t, raw, "metadata")
	if string(field(t, md, "step_uuid")) != "null" || string(field(t, md, "step_name")) != "null" {
		t.Fatalf("optional step fields: %s", md)
	}
	if string(field(t, md, "payment_processor")) != `"stripe"` || string(field(t, md, "fired_by")) != `"PaymentEventPublisher"` {
		t.Fatalf("extra metadata: %s", md)
	}
	back, err := DecodeEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Metadata.Extra["payment_processor"]) != `"stripe"` || len(back.Metadata.Extra) != 1 || back.Payload.Payload != nil {
		t.Fatalf("decoded extra %v payload %s", back.Metadata.Extra, back.Payload.Payload)
	}
	if _, err := DecodeEvent([]byte(`{"event_name":"x.y"}`)); err == nil {
		t.Fatal("an envelope without event_id decoded")
	}
}
