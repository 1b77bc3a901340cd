package state

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestStepEventJSON(t *testing.T) {
	result := json.RawMessage(`{"step_uuid":"01960000-0000-7000-8000-000000000001","success":true,"result":{"n":4}}`)
	cases := []struct {
		ev   StepEvent
		want string
	}{
		{StepEventOf(StepEventStart), `{"type":"Start"}`},
		{StepEventOf(StepEventEnqueue), `{"type":"Enqueue"}`},
		{StepEventOf(StepEventRetry), `{"type":"Retry"}`},
		{StepEventOf(StepEventResetForRetry), `{"type":"ResetForRetry"}`},
		{StepEventOf(StepEventCancel), `{"type":"Cancel"}`},
		{StepEventOf(StepEventResolveManually), `{"type":"ResolveManually"}`},
		{StepEventWithData(StepEventEnqueueForOrchestration, result),
			`{"type":"EnqueueForOrchestration","data":{"step_uuid":"01960000-0000-7000-8000-000000000001","success":true,"result":{"n":4}}}`},
		{StepEventWithData(StepEventEnqueueAsErrorForOrchestration, json.RawMessage(`{"success":false}`)),
			`{"type":"EnqueueAsErrorForOrchestration","data":{"success":false}}`},
		{StepEventOf(StepEventEnqueueForOrchestration), `{"type":"EnqueueForOrchestration","data":null}`},
		{StepEventWithData(StepEventComplete, json.RawMessage(`{"a":1}`)), `{"type":"Complete","data":{"a":1}}`},
		{StepEventOf(StepEventCompleteManually), `{"type":"CompleteManually","data":null}`},
		{StepEventWithMessage(StepEventFail, `Step failed: boom "x"`), `{"type":"Fail","data":"Step failed: boom \"x\""}`},
		{StepEventWithMessage(StepEventWaitForRetry, "timeout - retryable"), `{"type":"WaitForRetry","data":"timeout - retryable"}`},
		// Payload fields that do not belong to the variant are ignored.
		{StepEvent{Type: StepEventStart, Data: json.RawMessage(`{"x":1}`), Message: "m"}, `{"type":"Start"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.ev)
		if err != nil {
			t.Fatalf("marshal %s: %v", c.ev.Type, err)
		}
		if string(b) != c.want {
			t.Errorf("marshal %s = %s\nwant %s", c.ev.Type, b, c.want)
		}
		if c.ev.String() != c.want {
			t.Errorf("String() = %s, want %s", c.ev.String(), c.want)
		}
		var back StepEvent
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		again, _ := json.Marshal(back)
		if string(again) != c.want {
			t.Errorf("round trip of %s gave %s", c.want, again)
		}
	}
}

func TestStepEventJSONEveryType(t *testing.T) {
	for _, typ := range StepEventTypes() {
		ev := StepEvent{Type: typ, Data: json.RawMessage(`{"k":"v"}`), Message: "msg"}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		var back StepEvent
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: unmarshal %s: %v", typ, b, err)
		}
		if back.Type != typ {
			t.Errorf("%s decoded as %s", typ, back.Type)
		}
	}
}

func TestStepEventUnmarshal(t *testing.T) {
	var ev StepEvent
	// A result variant without "data" is None.
	if err := json.Unmarshal([]byte(`{"type":"Complete"}`), &ev); err != nil || ev.Type != StepEventComplete || ev.Data != nil {
		t.Fatalf("Complete without data: %+v, %v", ev, err)
	}
	if ev.Results() != nil {
		t.Fatal("Results() of None must be nil")
	}
	if err := json.Unmarshal([]byte(`{"type":"EnqueueForOrchestration","data":{"success":true}}`), &ev); err != nil {
		t.Fatal(err)
	}
	if string(ev.Results()) != `{"success":true}` {
		t.Fatalf("Results() = %s", ev.Results())
	}
	if err := json.Unmarshal([]byte(`{"type":"Fail","data":"boom"}`), &ev); err != nil || ev.Message != "boom" || ev.Results() != nil {
		t.Fatalf("Fail: %+v, %v", ev, err)
	}
	for _, bad := range []string{
		`{"type":"Bogus"}`,
		`{"type":"Fail"}`,
		`{"type":"Fail","data":3}`,
		`{"type":"Start","data":{"x":1}}`,
		`{"type":"WaitForRetry","data":null}`,
		`"Start"`,
	} {
		if err := json.Unmarshal([]byte(bad), &ev); err == nil {
			t.Errorf("unmarshal %s: want error", bad)
		}
	}
	if _, err := json.Marshal(StepEvent{Type: "Bogus"}); err == nil {
		t.Error("marshal of unknown type must fail")
	}
	if _, err := json.Marshal(StepEventWithData(StepEventComplete, json.RawMessage(`{bad`))); err == nil {
		t.Error("marshal of invalid data must fail")
	}
}

// The metadata "event" value is the event's JSON as a string; decoding the metadata object and
// then the string gives the event back (what tasker-core's extract_results_from_event does).
func TestStepEventInsideMetadata(t *testing.T) {
	ev := StepEventWithData(StepEventEnqueueForOrchestration, json.RawMessage(`{"success":true,"result":{"a":[1,2]}}`))
	b, _ := json.Marshal(ev)
	meta, _ := json.Marshal(map[string]any{"event": string(b), "timestamp": "x"})
	var m map[string]any
	if err := json.Unmarshal(meta, &m); err != nil {
		t.Fatal(err)
	}
	s, ok := m["event"].(string)
	if !ok {
		t.Fatalf("event is %T, want string", m["event"])
	}
	var back StepEvent
	if err := json.Unmarshal([]byte(s), &back); err != nil {
		t.Fatal(err)
	}
	if back.Type != StepEventEnqueueForOrchestration || string(back.Results()) != `{"success":true,"result":{"a":[1,2]}}` {
		t.Fatalf("decoded %+v", back)
	}
}

func TestTaskEventDebugString(t *testing.T) {
	a := uuid.MustParse("01960000-0000-7000-8000-00000000000a")
	b := uuid.MustParse("01960000-0000-7000-8000-00000000000b")
	cases := []struct {
		ev   TaskEvent
		want string
	}{
		{TaskEventOf(TaskEventStart), "Start"},
		{TaskEventOf(TaskEventAllStepsSuccessful), "AllStepsSuccessful"},
		{ReadyStepsFound(2), "ReadyStepsFound(2)"},
		{StepsEnqueued([]uuid.UUID{a, b}), "StepsEnqueued([01960000-0000-7000-8000-00000000000a, 01960000-0000-7000-8000-00000000000b])"},
		{StepsEnqueued(nil), "StepsEnqueued([])"},
		{StepCompleted(a), "StepCompleted(01960000-0000-7000-8000-00000000000a)"},
		{TaskEvent{Type: TaskEventStepFailed, StepUUID: b}, "StepFailed(01960000-0000-7000-8000-00000000000b)"},
		{TaskEventWithMessage(TaskEventPermanentFailure, "Steps in error state"), `PermanentFailure("Steps in error state")`},
		{TaskEventWithMessage(TaskEventFail, "it's \"bad\"\n\ttab\\ \x01 é"), `Fail("it's \"bad\"\n\ttab\\ \u{1} é")`},
		{TaskEventWithMessage(TaskEventEnqueueFailed, ""), `EnqueueFailed("")`},
	}
	for _, c := range cases {
		if got := c.ev.String(); got != c.want {
			t.Errorf("String() = %s\nwant       %s", got, c.want)
		}
	}
}

func TestTaskEventJSON(t *testing.T) {
	a := uuid.MustParse("01960000-0000-7000-8000-00000000000a")
	cases := []struct {
		ev   TaskEvent
		want string
	}{
		{TaskEventOf(TaskEventStart), `{"type":"Start"}`},
		{ReadyStepsFound(3), `{"type":"ReadyStepsFound","data":3}`},
		{StepsEnqueued([]uuid.UUID{a}), `{"type":"StepsEnqueued","data":["01960000-0000-7000-8000-00000000000a"]}`},
		{StepsEnqueued(nil), `{"type":"StepsEnqueued","data":[]}`},
		{StepCompleted(a), `{"type":"StepCompleted","data":"01960000-0000-7000-8000-00000000000a"}`},
		{TaskEventWithMessage(TaskEventPermanentFailure, "x"), `{"type":"PermanentFailure","data":"x"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.ev)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("marshal = %s, want %s", b, c.want)
		}
		var back TaskEvent
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if back.String() != c.ev.String() {
			t.Errorf("round trip %s → %s", c.ev, back)
		}
	}
	for _, typ := range TaskEventTypes() {
		b, err := json.Marshal(TaskEvent{Type: typ, Count: 1, StepUUIDs: []uuid.UUID{a}, StepUUID: a, Message: "m"})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		var back TaskEvent
		if err := json.Unmarshal(b, &back); err != nil || back.Type != typ {
			t.Fatalf("%s: %s → %+v, %v", typ, b, back, err)
		}
	}
	for _, bad := range []string{`{"type":"Nope"}`, `{"type":"ReadyStepsFound"}`, `{"type":"ReadyStepsFound","data":-1}`,
		`{"type":"StepCompleted","data":"not-a-uuid"}`, `{"type":"Start","data":1}`} {
		var ev TaskEvent
		if err := json.Unmarshal([]byte(bad), &ev); err == nil {
			t.Errorf("unmarshal %s: want error", bad)
		}
	}
}

func TestRFC3339LikeChrono(t *testing.T) {
	base := time.Date(2026, 3, 21, 21, 16, 8, 0, time.UTC)
	cases := []struct {
		t    time.Time
		want string
	}{
		{base, "2026-03-21T21:16:08+00:00"},
		{base.Add(123 * time.Millisecond), "2026-03-21T21:16:08.123+00:00"},
		{base.Add(123456 * time.Microsecond), "2026-03-21T21:16:08.123456+00:00"},
		{base.Add(123456789), "2026-03-21T21:16:08.123456789+00:00"},
		{base.In(time.FixedZone("X", -5*3600)), "2026-03-21T21:16:08+00:00"},
	}
	for _, c := range cases {
		if got := rfc3339(c.t); got != c.want {
			t.Errorf("rfc3339(%v) = %s, want %s", c.t, got, c.want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, rfc3339(time.Time{})); err != nil {
		t.Errorf("rfc3339(now) does not parse: %v", err)
	}
}

func TestEventTypeLists(t *testing.T) {
	if n := len(StepEventTypes()); n != 12 {
		t.Errorf("%d step event types, want 12", n)
	}
	if n := len(TaskEventTypes()); n != 22 {
		t.Errorf("%d task event types, want 22", n)
	}
	seen := map[any]bool{}
	for _, e := range StepEventTypes() {
		if !e.Valid() || seen[e] {
			t.Errorf("step event %s invalid or duplicated", e)
		}
		seen[e] = true
	}
	for _, e := range TaskEventTypes() {
		if !e.Valid() || seen[e] {
			t.Errorf("task event %s invalid or duplicated", e)
		}
		seen[e] = true
	}
	if !reflect.DeepEqual(StepEventOf(StepEventStart), StepEvent{Type: StepEventStart}) {
		t.Error("StepEventOf")
	}
}
