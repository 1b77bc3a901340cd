package queue

import (
	"errors"
	"testing"
	"time"
)

func TestParseEventWithPayload(t *testing.T) {
	// The shape tasker.pgmq_send_with_notify writes (json_build_object spacing included).
	p := `{"event_type" : "message_with_payload", "msg_id" : 7, "queue_name" : "worker_payments_queue", "namespace" : "payments", "message" : {"step_uuid": "s", "task_uuid": "t", "correlation_id": "c"}, "ready_at" : "2026-11-23T07:53:38.734656+00:00", "delay_seconds" : 0}`
	ev, err := ParseEvent("pgmq_message_ready.payments", p)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != EventMessageWithPayload || ev.MsgID != 7 || ev.QueueName != "worker_payments_queue" ||
		ev.Namespace != "payments" || ev.Channel != "pgmq_message_ready.payments" || ev.Payload != p {
		t.Fatalf("event = %+v", ev)
	}
	if string(ev.Message) != `{"step_uuid": "s", "task_uuid": "t", "correlation_id": "c"}` {
		t.Errorf("message = %s", ev.Message)
	}
	want := time.Date(2026, 11, 23, 7, 53, 38, 734656000, time.UTC)
	if !ev.ReadyAt.Equal(want) {
		t.Errorf("ready_at = %v, want %v", ev.ReadyAt, want)
	}
	if ev.IsWakeup() {
		t.Error("payload event reported as wake-up")
	}
}

func TestParseEventSignalOnly(t *testing.T) {
	p := `{"event_type" : "message_ready", "msg_id" : 9, "queue_name" : "orchestration_step_results", "namespace" : "orchestration", "ready_at" : "2026-11-23T07:53:38+05:30", "delay_seconds" : 3, "payload_omitted" : true}`
	ev, err := ParseEvent("pgmq_message_ready", p)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != EventMessageReady || ev.MsgID != 9 || !ev.PayloadOmitted || ev.DelaySeconds != 3 || ev.Message != nil || !ev.IsWakeup() {
		t.Fatalf("event = %+v", ev)
	}
	if ev.ReadyAt.UTC().Hour() != 2 {
		t.Errorf("ready_at = %v", ev.ReadyAt)
	}
}

func TestParseEventBatchAndQueueCreated(t *testing.T) {
	ev, err := ParseEvent("pgmq_message_ready.payments", `{"event_type":"batch_ready","msg_ids":[1,2,3],"queue_name":"worker_payments_queue","namespace":"payments","message_count":3,"ready_at":"2026-01-02T03:04:05.5+00:00","delay_seconds":0}`)
	if err != nil || ev.Type != EventBatchReady || len(ev.MsgIDs) != 3 || ev.MsgIDs[2] != 3 || ev.MessageCount != 3 {
		t.Fatalf("batch: %+v %v", ev, err)
	}
	ev, err = ParseEvent("pgmq_queue_created", `{"event_type" : "queue_created", "queue_name" : "worker_x_queue", "namespace" : "x", "created_at" : "2026-01-02T03:04:05.123+00:00"}`)
	if err != nil || ev.Type != EventQueueCreated || ev.CreatedAt.IsZero() || ev.IsWakeup() {
		t.Fatalf("queue_created: %+v %v", ev, err)
	}
}

func TestParseEventNamespaceFallback(t *testing.T) {
	ev, err := ParseEvent("pgmq_message_ready.billing", `{"event_type":"message_ready","msg_id":1,"queue_name":"worker_billing_queue"}`)
	if err != nil || ev.Namespace != "billing" {
		t.Fatalf("%+v %v", ev, err)
	}
	ev, err = ParseEvent("pgmq_message_ready", `{"event_type":"message_ready","msg_id":1,"queue_name":"worker_billing_queue","ready_at":"2026-01-02T03:04:05.123456"}`)
	if err != nil || ev.Namespace != "billing" || ev.ReadyAt.Location() != time.UTC {
		t.Fatalf("%+v %v", ev, err)
	}
}

func TestParseEventErrors(t *testing.T) {
	bad := []string{
		`{"event_type":"batch_ready","msg_ids":[1,2,...}`, // tasker's truncation
		`{}`,
		`{"event_type":"message_with_payload","msg_id":1,"queue_name":"q"}`,
		`{"event_type":"message_ready","queue_name":"q"}`,
		`{"event_type":"message_ready","msg_id":1,"queue_name":"q","ready_at":"yesterday"}`,
		`not json`,
	}
	for _, p := range bad {
		if _, err := ParseEvent("c", p); !errors.Is(err, ErrBadEvent) {
			t.Errorf("ParseEvent(%s) = %v, want ErrBadEvent", p, err)
		}
	}
	ev, err := ParseEvent("c", `{"event_type":"something_new","queue_name":"q"}`)
	if err != nil || ev.Type != "something_new" {
		t.Errorf("unknown type: %+v %v", ev, err)
	}
}
