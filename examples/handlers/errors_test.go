package exhandlers

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// executions runs fail_n_times once per hydrated attempts value and returns the outcome of each
// (the success output, or "" for a failure).
func executions(t *testing.T, init string, attempts []*int32) []string {
	t.Helper()
	var got []string
	for _, a := range attempts {
		r := call(t, "error_injection.fail_n_times", withInit(init), withAttempts(a), withContext(`{"test_id":"retry"}`))
		if r.IsFailure() {
			ser := assertFailure(t, r, "SIMULATED_FAILURE", "RetryableError", true)
			attempt := int32(1)
			if a != nil {
				attempt = *a
			}
			want := "Simulated failure on attempt " + itoa(attempt) + " (will succeed after "
			if !strings.HasPrefix(ser.Error.Message, want) || string(ser.Metadata.Context["attempt"]) != itoa(attempt) {
				t.Errorf("failure %q context %v", ser.Error.Message, ser.Metadata.Context)
			}
			got = append(got, "")
			continue
		}
		got = append(got, string(output(t, r)))
	}
	return got
}

func itoa(v int32) string { return strconv.Itoa(int(v)) }

func TestFailNTimesSucceedsAfterFailCount(t *testing.T) {
	const success = `{"attempts_before_success":3,"fail_count_configured":2,"message":"Succeeded after simulated failures"}`
	// tasker-core's worker hydrates before claiming: the handler sees NULL, 1, 2, 3.
	got := executions(t, `{"fail_count":2}`, []*int32{nil, int32p(1), int32p(2), int32p(3)})
	if got[0] != "" || got[1] != "" || got[2] != "" || got[3] == "" {
		t.Fatalf("outcomes %q", got)
	}
	assertJSON(t, []byte(got[3]), success)
	// A worker that hydrates after claiming shows 1, 2, 3: the same final value.
	got = executions(t, `{"fail_count":2}`, []*int32{int32p(1), int32p(2), int32p(3)})
	if got[0] != "" || got[1] != "" || got[2] == "" {
		t.Fatalf("outcomes %q", got)
	}
	assertJSON(t, []byte(got[2]), success)
	// Default fail_count is 1.
	if got := executions(t, `{}`, []*int32{nil, int32p(2)}); got[0] != "" || !strings.Contains(got[1], `"fail_count_configured":1`) {
		t.Errorf("default fail_count outcomes %q", got)
	}
}

func TestFailNTimesExhaustion(t *testing.T) {
	// fail_count 10 with max_attempts 3: every execution the orchestrator allows fails retryably.
	for i, out := range executions(t, `{"fail_count":10}`, []*int32{nil, int32p(1), int32p(2), int32p(3)}) {
		if out != "" {
			t.Errorf("execution %d succeeded: %s", i+1, out)
		}
	}
	ser := assertFailure(t, call(t, "error_injection.fail_n_times", withInit(`{"fail_count":10}`), withAttempts(int32p(2))),
		"SIMULATED_FAILURE", "RetryableError", true)
	if ser.Error.Message != "Simulated failure on attempt 2 (will succeed after 10 failures)" || string(ser.Metadata.Context["fail_until"]) != "10" {
		t.Errorf("failure %q %v", ser.Error.Message, ser.Metadata.Context)
	}
}

func TestPermanentError(t *testing.T) {
	ser := assertFailure(t, call(t, "error_injection.permanent_error", withInit(`{"error_type":"permanent"}`)),
		"INVALID_PAYMENT_METHOD", "PermanentError", false)
	if ser.Error.Message != "Invalid payment method: test_invalid_card" || ser.Status != "failed" {
		t.Errorf("permanent error %q status %q", ser.Error.Message, ser.Status)
	}
}

func TestDomainEventSteps(t *testing.T) {
	orderID := "0195b6a0-1111-7000-8000-00000000abcd"
	ctx := withContext(`{"order_id":"` + orderID + `","customer_id":"cust-42","amount":199.99,"simulate_failure":false}`)

	v := output(t, call(t, "domain_events.validate_order", ctx, withInit(`{"validation_mode":"strict"}`)))
	assertJSON(t, v, `{"order_id":"`+orderID+`","validation_timestamp":"2026-03-20T15:04:05Z",
		"validation_checks":["order_id_present","customer_id_present","amount_positive"],"validated":true}`)

	p := output(t, call(t, "domain_events.process_payment", ctx, withInit(`{"payment_provider":"mock"}`)))
	txn := path(t, p, "transaction_id").(string)
	if _, err := uuid.Parse(strings.TrimPrefix(txn, "TXN-")); err != nil || !strings.HasPrefix(txn, "TXN-") {
		t.Errorf("transaction_id %q", txn)
	}
	assertJSON(t, p, `{"transaction_id":"`+txn+`","amount":199.99,"payment_method":"credit_card","processed_at":"2026-03-20T15:04:05Z","status":"success"}`)

	inv := output(t, call(t, "domain_events.update_inventory", ctx, withInit(`{"inventory_source":"mock"}`)))
	assertJSON(t, inv, `{"order_id":"`+orderID+`","items":[{"sku":"ITEM-001","quantity":1},{"sku":"ITEM-002","quantity":2}],
		"success":true,"updated_at":"2026-03-20T15:04:05Z"}`)

	n := output(t, call(t, "domain_events.send_notification", ctx, withInit(`{"notification_type":"email"}`)))
	nid := path(t, n, "notification_id").(string)
	if _, err := uuid.Parse(strings.TrimPrefix(nid, "NOTIF-")); err != nil || !strings.HasPrefix(nid, "NOTIF-") {
		t.Errorf("notification_id %q", nid)
	}
	assertJSON(t, n, `{"notification_id":"`+nid+`","channel":"email","recipient":"cust-42","sent_at":"2026-03-20T15:04:05Z","status":"delivered"}`)

	// Identifiers are derived from the step UUID: stable across runs of the same step.
	if again := output(t, call(t, "domain_events.send_notification", ctx)); path(t, again, "notification_id") != nid {
		t.Error("notification_id is not deterministic")
	}
}

func TestDomainEventFailures(t *testing.T) {
	for _, ctx := range []string{`{"order_id":"o","customer_id":"c","amount":0}`, `{"order_id":"o","customer_id":"c"}`} {
		assertFailure(t, call(t, "domain_events.validate_order", withContext(ctx), withInit(`{"validation_mode":"strict"}`)),
			"VALIDATION_ERROR", "ValidationError", false)
	}
	// Outside strict mode a zero amount passes without the amount_positive check.
	out := output(t, call(t, "domain_events.validate_order", withContext(`{"order_id":"o","customer_id":"c","amount":0}`)))
	assertJSON(t, mustMarshal(t, path(t, out, "validation_checks")), `["order_id_present","customer_id_present"]`)

	ser := assertFailure(t, call(t, "domain_events.process_payment", withContext(`{"order_id":"o-1","amount":5,"simulate_failure":true}`)),
		"PAYMENT_DECLINED", "PaymentError", true)
	if string(ser.Metadata.Context["order_id"]) != `"o-1"` || string(ser.Metadata.Context["failed_at"]) != `"2026-03-20T15:04:05Z"` {
		t.Errorf("payment failure context %v", ser.Metadata.Context)
	}
}
