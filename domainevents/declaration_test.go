package domainevents

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/protocol"
)

func TestDEParseDeclarationsDefaults(t *testing.T) {
	decls, err := ParseDeclarations(json.RawMessage(`[
		{"name":"payment.processed","description":"ok","schema":{"type":"object"},"publisher":"PaymentEventPublisher"},
		{"name":"payment.failed","description":"ko","condition":"failure","delivery_mode":"broadcast","schema":null,"publisher":null}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(decls) != 2 {
		t.Fatalf("%d declarations", len(decls))
	}
	d := decls[0]
	if d.Name != "payment.processed" || d.Condition != ConditionSuccess || d.DeliveryMode != DeliveryDurable ||
		d.Publisher != "PaymentEventPublisher" || string(d.Schema) != `{"type":"object"}` || !d.Durable() || d.Fast() {
		t.Fatalf("first declaration %+v", d)
	}
	d = decls[1]
	if d.Condition != ConditionFailure || d.DeliveryMode != DeliveryBroadcast || d.Publisher != "" || d.Schema != nil || !d.Durable() || !d.Fast() {
		t.Fatalf("second declaration %+v", d)
	}
	for _, none := range []string{``, `null`, `[]`} {
		got, err := ParseDeclarations(json.RawMessage(none))
		if err != nil || len(got) != 0 {
			t.Fatalf("%q: %v %v", none, got, err)
		}
	}
}

func TestDEParseDeclarationsRejects(t *testing.T) {
	cases := map[string]string{
		`[{"name":"a.b","condition":"sometimes"}]`:   "unknown condition",
		`[{"name":"a.b","delivery_mode":"carrier"}]`: "unknown delivery_mode",
		`[{"description":"no name"}]`:                "name is required",
		`{"name":"a.b"}`:                             "publishes_events",
	}
	for in, want := range cases {
		_, err := ParseDeclarations(json.RawMessage(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to mention %q", in, err, want)
		}
	}
}

// TestDEConditionTable is the full condition x outcome matrix, including the two conditions
// tasker-core never fires. Attempts are pre-claim counts; max_attempts is 3.
func TestDEConditionTable(t *testing.T) {
	type row struct {
		name      string
		success   bool
		retryable bool   // the result's metadata.retryable
		attempts  *int32 // before this execution's claim
		want      map[Condition]bool
	}
	all := func(s, f, rf, pf, a bool) map[Condition]bool {
		return map[Condition]bool{ConditionSuccess: s, ConditionFailure: f, ConditionRetryableFailure: rf, ConditionPermanentFailure: pf, ConditionAlways: a}
	}
	rows := []row{
		{"success first attempt", true, false, nil, all(true, false, false, false, true)},
		{"success on retry", true, false, ptr[int32](2), all(true, false, false, false, true)},
		{"permanent error", false, false, nil, all(false, true, false, true, true)},
		{"retryable error, attempts left", false, true, nil, all(false, true, true, false, true)},
		{"retryable error, second of three", false, true, ptr[int32](1), all(false, true, true, false, true)},
		{"retryable error, last attempt", false, true, ptr[int32](2), all(false, true, false, true, true)},
		{"retryable error beyond max", false, true, ptr[int32](7), all(false, true, false, true, true)},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			step := sampleStep(t, `[]`, r.attempts, 3)
			res := successResult(step, `{}`)
			if !r.success {
				res = failureResult(step, r.retryable)
			}
			o := OutcomeOf(step, res)
			for c, want := range r.want {
				if got := ShouldPublish(c, o); got != want {
					t.Errorf("ShouldPublish(%s, %+v) = %v, want %v", c, o, got, want)
				}
			}
		})
	}
	if ShouldPublish("sometimes", Outcome{Succeeded: true}) {
		t.Fatal("an unknown condition fired")
	}
	// A NULL max_attempts means 3, as in the orchestrator.
	step := sampleStep(t, `[]`, ptr[int32](2), 3)
	step.WorkflowStep.MaxAttempts = nil
	if o := OutcomeOf(step, failureResult(step, true)); o.Retryable {
		t.Fatal("third attempt with default max_attempts counted as retryable")
	}
}

func TestDEValidatePayload(t *testing.T) {
	d := EventDeclaration{Name: "payment.processed", Schema: json.RawMessage(`{
		"type":"object","required":["transaction_id","amount"],
		"properties":{"transaction_id":{"type":"string"},"amount":{"type":"number","minimum":0},
		              "processed_at":{"type":"string","format":"date-time"}}}`)}
	if err := d.ValidatePayload(json.RawMessage(`{"transaction_id":"TXN-1","amount":10.5,"processed_at":"2026-03-21T21:16:08Z"}`)); err != nil {
		t.Fatalf("valid payload refused: %v", err)
	}
	cases := map[string]string{
		`{"amount":10}`:                                                "transaction_id",
		`{"transaction_id":"x","amount":-1}`:                           "amount",
		`{"transaction_id":7,"amount":1}`:                              "transaction_id",
		`{"transaction_id":"x","amount":1,"processed_at":"yesterday"}`: "processed_at",
		`[]`: "(payload)",
		``:   "(payload)", // empty validates as null
	}
	for in, want := range cases {
		err := d.ValidatePayload(json.RawMessage(in))
		var se *SchemaError
		if !errors.As(err, &se) || se.Invalid || se.Event != "payment.processed" || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a *SchemaError mentioning %q", in, err, want)
		}
	}
	if err := (EventDeclaration{Name: "x.y"}).ValidatePayload(json.RawMessage(`"anything"`)); err != nil {
		t.Fatalf("no schema must accept anything: %v", err)
	}
	bad := EventDeclaration{Name: "x.y", Schema: json.RawMessage(`{"type":"nonsense"}`)}
	var se *SchemaError
	if err := bad.ValidatePayload(json.RawMessage(`{}`)); !errors.As(err, &se) || !se.Invalid {
		t.Fatalf("malformed schema: %v", err)
	}
}

// NeedsDurable: only durable and broadcast declarations need the completion's transaction.
func TestStepPublisherNeedsDurable(t *testing.T) {
	p := NewStepPublisher(StepPublisherConfig{})
	for raw, want := range map[string]bool{
		``:   false,
		`[]`: false,
		`[{"name":"a.b","delivery_mode":"fast"}]`:    false,
		`[{"name":"a.b","delivery_mode":"durable"}]`: true,
		`[{"name":"a.b"}]`:                           true, // durable is the default
		`[{"name":"a.b","delivery_mode":"fast"},{"name":"c.d","delivery_mode":"broadcast"}]`: true,
		`[{"name":"a.b","delivery_mode":"carrier"}]`:                                         false, // unusable: publishes nothing
	} {
		var seq protocol.TaskSequenceStep
		seq.StepDefinition.PublishesEvents = json.RawMessage(raw)
		if got := p.NeedsDurable(seq); got != want {
			t.Errorf("NeedsDurable(%s) = %v, want %v", raw, got, want)
		}
	}
}
