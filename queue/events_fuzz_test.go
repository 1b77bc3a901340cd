package queue

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParseEvent checks that any notification payload either decodes or fails with ErrBadEvent,
// never panics, and that a decoded event keeps its inputs and carries the fields its type needs.
func FuzzParseEvent(f *testing.F) {
	f.Add("pgmq_message_ready.payments", `{"event_type" : "message_with_payload", "msg_id" : 7, "queue_name" : "worker_payments_queue", "namespace" : "payments", "message" : {"step_uuid": "s"}, "ready_at" : "2026-11-23T07:53:38.734656+00:00", "delay_seconds" : 0}`)
	f.Add("pgmq_message_ready.orchestration", `{"event_type":"message_ready","msg_id":3,"queue_name":"orchestration_step_results","ready_at":"2026-11-23T07:53:38.734656"}`)
	f.Add("pgmq_message_ready", `{"event_type":"batch_ready","msg_ids":[1,2,3],"queue_name":"worker_x_queue","message_count":3,"truncated":true}`)
	f.Add("pgmq_queue_created", `{"event_type":"queue_created","queue_name":"worker_y_queue","created_at":"2026-11-23T07:53:38Z"}`)
	f.Add("pgmq_message_ready.x", `{"event_type":"something_new","msg_id":null}`)
	f.Add("pgmq_message_ready.x", `{"event_type":"message_ready","msg_ids":[1,2,3],"queue_name":"worker_x_queue","message_count":3,"truncated":tr`)
	f.Add("", `{"event_type":"message_with_payload","msg_id":1,"queue_name":"q","message":null}`)
	f.Add("c", `[]`)
	f.Add("c", `{"ready_at":"not a time","event_type":"message_ready"}`)
	f.Fuzz(func(t *testing.T, channel, payload string) {
		ev, err := ParseEvent(channel, payload)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("error does not wrap ErrBadEvent: %v", err)
			}
			return
		}
		if ev.Channel != channel || ev.Payload != payload {
			t.Fatalf("event lost its inputs: channel %q payload %q", ev.Channel, ev.Payload)
		}
		switch ev.Type {
		case "":
			t.Fatal("accepted an event without event_type")
		case EventMessageWithPayload:
			if ev.QueueName == "" || ev.Message == nil || !json.Valid(ev.Message) {
				t.Fatalf("message_with_payload without queue or message: %+v", ev)
			}
		case EventMessageReady, EventBatchReady, EventQueueCreated:
			if ev.QueueName == "" {
				t.Fatalf("%s without queue_name: %+v", ev.Type, ev)
			}
		}
		if ev.QueueName != "" && ev.Namespace == "" {
			t.Fatalf("no namespace for queue %q", ev.QueueName)
		}
		again, err := ParseEvent(channel, payload)
		if err != nil || !reflect.DeepEqual(again, ev) {
			t.Fatalf("parsing is not deterministic: %+v vs %+v (%v)", ev, again, err)
		}
	})
}
