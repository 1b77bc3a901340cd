package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// EventType tags a notification. The first four are written by tasker's SQL; the last two are
// produced by the Listener itself.
type EventType string

// Event types.
const (
	// EventMessageWithPayload carries the whole message (sends under 7000 characters).
	EventMessageWithPayload EventType = "message_with_payload"
	// EventMessageReady is signal-only: read the message with Client.ReadSpecific.
	EventMessageReady EventType = "message_ready"
	// EventBatchReady announces several messages (tasker.pgmq_send_batch_with_notify).
	EventBatchReady EventType = "batch_ready"
	// EventQueueCreated announces a new queue (channel pgmq_queue_created).
	EventQueueCreated EventType = "queue_created"
	// EventReconnected is emitted after the Listener re-established its connection.
	// Notifications sent during the gap are lost: consumers should poll now.
	EventReconnected EventType = "reconnected"
	// EventUnparsable is emitted for a payload that is not a valid event (tasker's batch
	// notification truncates large payloads into invalid JSON). Consumers should poll the
	// channel's namespace.
	EventUnparsable EventType = "unparsable"
)

// Event is one decoded notification.
type Event struct {
	Type    EventType
	Channel string // channel the notification arrived on (empty for EventReconnected)

	QueueName string
	Namespace string // from the payload, else derived from the channel or the queue name
	MsgID     int64  // message_with_payload, message_ready
	MsgIDs    []int64
	Message   json.RawMessage // message_with_payload only

	ReadyAt        time.Time // zero when absent
	CreatedAt      time.Time // queue_created
	DelaySeconds   int
	MessageCount   int
	PayloadOmitted bool
	Truncated      bool

	Payload string // the raw notification payload
}

// IsWakeup reports whether the event tells a consumer to poll (rather than carrying a message it
// can use directly): everything except EventMessageWithPayload and EventQueueCreated.
func (e Event) IsWakeup() bool {
	return e.Type != EventMessageWithPayload && e.Type != EventQueueCreated
}

// ErrBadEvent is wrapped by ParseEvent errors.
var ErrBadEvent = errors.New("queue: bad notification payload")

type wireEvent struct {
	EventType      string          `json:"event_type"`
	MsgID          *int64          `json:"msg_id"`
	MsgIDs         []int64         `json:"msg_ids"`
	QueueName      string          `json:"queue_name"`
	Namespace      string          `json:"namespace"`
	Message        json.RawMessage `json:"message"`
	ReadyAt        string          `json:"ready_at"`
	CreatedAt      string          `json:"created_at"`
	DelaySeconds   int             `json:"delay_seconds"`
	MessageCount   int             `json:"message_count"`
	PayloadOmitted bool            `json:"payload_omitted"`
	Truncated      bool            `json:"truncated"`
}

// ParseEvent decodes a notification payload received on channel. Unknown event types are
// returned as they are (forward compatibility); known ones must carry their required fields.
func ParseEvent(channel, payload string) (Event, error) {
	var w wireEvent
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	ev := Event{
		Type:           EventType(w.EventType),
		Channel:        channel,
		QueueName:      w.QueueName,
		Namespace:      w.Namespace,
		MsgIDs:         w.MsgIDs,
		DelaySeconds:   w.DelaySeconds,
		MessageCount:   w.MessageCount,
		PayloadOmitted: w.PayloadOmitted,
		Truncated:      w.Truncated,
		Payload:        payload,
	}
	if w.MsgID != nil {
		ev.MsgID = *w.MsgID
	}
	if len(w.Message) > 0 && string(w.Message) != "null" {
		ev.Message = w.Message
	}
	var err error
	if ev.ReadyAt, err = parseTimestamp(w.ReadyAt); err != nil {
		return Event{}, fmt.Errorf("%w: ready_at: %w", ErrBadEvent, err)
	}
	if ev.CreatedAt, err = parseTimestamp(w.CreatedAt); err != nil {
		return Event{}, fmt.Errorf("%w: created_at: %w", ErrBadEvent, err)
	}

	var missing []string
	need := func(ok bool, field string) {
		if !ok {
			missing = append(missing, field)
		}
	}
	switch ev.Type {
	case "":
		need(false, "event_type")
	case EventMessageWithPayload:
		need(w.MsgID != nil, "msg_id")
		need(ev.QueueName != "", "queue_name")
		need(ev.Message != nil, "message")
	case EventMessageReady:
		need(w.MsgID != nil, "msg_id")
		need(ev.QueueName != "", "queue_name")
	case EventBatchReady, EventQueueCreated:
		need(ev.QueueName != "", "queue_name")
	}
	if len(missing) > 0 {
		return Event{}, fmt.Errorf("%w: missing %s", ErrBadEvent, strings.Join(missing, ", "))
	}
	if ev.Namespace == "" {
		ev.Namespace = namespaceOf(channel, ev.QueueName)
	}
	return ev, nil
}

// namespaceOf derives a namespace from a per-namespace channel, else from the queue name.
func namespaceOf(channel, queueName string) string {
	if ns, ok := strings.CutPrefix(channel, GlobalNotifyChannel+"."); ok && ns != "" {
		return ns
	}
	if queueName != "" {
		return NamespaceOfQueue(queueName)
	}
	return ""
}

// parseTimestamp accepts PostgreSQL's JSON timestamptz form (RFC 3339) and, leniently, a naive
// timestamp, which tasker writes in UTC.
func parseTimestamp(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("unrecognised timestamp %q", s)
	}
	return t, nil
}
