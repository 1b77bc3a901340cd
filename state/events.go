package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// StepEventType names a StepEvent variant exactly as tasker-core's serde tag spells it.
type StepEventType string

// Step event variants. The comment gives the payload carried in StepEvent.
const (
	StepEventEnqueue                        StepEventType = "Enqueue"                        // none
	StepEventStart                          StepEventType = "Start"                          // none
	StepEventEnqueueForOrchestration        StepEventType = "EnqueueForOrchestration"        // Data: StepExecutionResult or nil
	StepEventEnqueueAsErrorForOrchestration StepEventType = "EnqueueAsErrorForOrchestration" // Data: StepExecutionResult or nil
	StepEventComplete                       StepEventType = "Complete"                       // Data: results or nil
	StepEventFail                           StepEventType = "Fail"                           // Message
	StepEventCancel                         StepEventType = "Cancel"                         // none
	StepEventResolveManually                StepEventType = "ResolveManually"                // none
	StepEventCompleteManually               StepEventType = "CompleteManually"               // Data: results or nil
	StepEventResetForRetry                  StepEventType = "ResetForRetry"                  // none
	StepEventRetry                          StepEventType = "Retry"                          // none
	StepEventWaitForRetry                   StepEventType = "WaitForRetry"                   // Message
)

// StepEventTypes lists every step event variant.
func StepEventTypes() []StepEventType {
	return []StepEventType{
		StepEventEnqueue, StepEventStart, StepEventEnqueueForOrchestration,
		StepEventEnqueueAsErrorForOrchestration, StepEventComplete, StepEventFail, StepEventCancel,
		StepEventResolveManually, StepEventCompleteManually, StepEventResetForRetry, StepEventRetry,
		StepEventWaitForRetry,
	}
}

type payloadKind int

const (
	payloadNone    payloadKind = iota // unit variant: {"type":"X"}
	payloadValue                      // Option<Value>: {"type":"X","data":<json|null>}
	payloadString                     // String: {"type":"X","data":"..."}
	payloadCount                      // u32
	payloadUUID                       // Uuid
	payloadUUIDSet                    // Vec<Uuid>
	payloadInvalid                    // unknown variant
)

func (t StepEventType) payload() payloadKind {
	switch t {
	case StepEventEnqueue, StepEventStart, StepEventCancel, StepEventResolveManually,
		StepEventResetForRetry, StepEventRetry:
		return payloadNone
	case StepEventEnqueueForOrchestration, StepEventEnqueueAsErrorForOrchestration,
		StepEventComplete, StepEventCompleteManually:
		return payloadValue
	case StepEventFail, StepEventWaitForRetry:
		return payloadString
	}
	return payloadInvalid
}

// Valid reports whether t is a known step event variant.
func (t StepEventType) Valid() bool { return t.payload() != payloadInvalid }

// StepEvent is tasker-core's StepEvent: a variant and its payload. Only the payload field that
// belongs to Type is used; the others are ignored when serializing.
type StepEvent struct {
	Type StepEventType
	// Data is the Option<Value> payload of EnqueueForOrchestration, EnqueueAsErrorForOrchestration,
	// Complete and CompleteManually; nil means None.
	Data json.RawMessage
	// Message is the String payload of Fail and WaitForRetry.
	Message string
}

// StepEventOf returns the payload-free event of type t (Enqueue, Start, Cancel, ...).
func StepEventOf(t StepEventType) StepEvent { return StepEvent{Type: t} }

// StepEventWithData returns an event of type t carrying results (for the four result variants).
func StepEventWithData(t StepEventType, data json.RawMessage) StepEvent {
	return StepEvent{Type: t, Data: data}
}

// StepEventWithMessage returns an event of type t carrying a message (Fail, WaitForRetry).
func StepEventWithMessage(t StepEventType, msg string) StepEvent {
	return StepEvent{Type: t, Message: msg}
}

// Results returns the results payload carried by the event, nil for variants without one or
// for None.
func (e StepEvent) Results() json.RawMessage {
	if e.Type.payload() != payloadValue || isJSONNull(e.Data) {
		return nil
	}
	return e.Data
}

type adjacent struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
}

// MarshalJSON encodes the event the way serde's adjacently tagged representation does:
// {"type":"Start"}, {"type":"Fail","data":"msg"}, {"type":"Complete","data":{...}|null}.
func (e StepEvent) MarshalJSON() ([]byte, error) {
	out := adjacent{Type: string(e.Type)}
	switch e.Type.payload() {
	case payloadNone:
	case payloadValue:
		if len(e.Data) == 0 {
			out.Data = json.RawMessage("null")
		} else {
			if !json.Valid(e.Data) {
				return nil, fmt.Errorf("state: step event %s: data is not valid JSON", e.Type)
			}
			out.Data = e.Data
		}
	case payloadString:
		b, err := json.Marshal(e.Message)
		if err != nil {
			return nil, err
		}
		out.Data = b
	default:
		return nil, fmt.Errorf("state: unknown step event type %q", e.Type)
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes the adjacently tagged form. A missing "data" of a result variant means None.
func (e *StepEvent) UnmarshalJSON(b []byte) error {
	var in adjacent
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("state: decode step event: %w", err)
	}
	ev := StepEvent{Type: StepEventType(in.Type)}
	switch ev.Type.payload() {
	case payloadNone:
		if !isJSONNull(in.Data) {
			return fmt.Errorf("state: step event %s takes no data", in.Type)
		}
	case payloadValue:
		if !isJSONNull(in.Data) {
			ev.Data = append(json.RawMessage(nil), in.Data...)
		}
	case payloadString:
		if err := json.Unmarshal(in.Data, &ev.Message); err != nil || isJSONNull(in.Data) {
			return fmt.Errorf("state: step event %s needs a string in data", in.Type)
		}
	default:
		return fmt.Errorf("state: unknown step event type %q", in.Type)
	}
	*e = ev
	return nil
}

// String returns the event's JSON (the form stored in transition metadata), or its type name if
// it cannot be encoded.
func (e StepEvent) String() string {
	b, err := e.MarshalJSON()
	if err != nil {
		return string(e.Type)
	}
	return string(b)
}

// TaskEventType names a TaskEvent variant exactly as tasker-core spells it.
type TaskEventType string

// Task event variants. The comment gives the payload carried in TaskEvent.
const (
	TaskEventStart               TaskEventType = "Start"
	TaskEventCancel              TaskEventType = "Cancel"
	TaskEventGiveUp              TaskEventType = "GiveUp"
	TaskEventManualResolution    TaskEventType = "ManualResolution"
	TaskEventReadyStepsFound     TaskEventType = "ReadyStepsFound" // Count
	TaskEventNoStepsFound        TaskEventType = "NoStepsFound"
	TaskEventNoDependenciesReady TaskEventType = "NoDependenciesReady"
	TaskEventDependenciesReady   TaskEventType = "DependenciesReady"
	TaskEventStepsEnqueued       TaskEventType = "StepsEnqueued" // StepUUIDs
	TaskEventEnqueueFailed       TaskEventType = "EnqueueFailed" // Message
	TaskEventStepCompleted       TaskEventType = "StepCompleted" // StepUUID
	TaskEventStepFailed          TaskEventType = "StepFailed"    // StepUUID
	TaskEventAllStepsCompleted   TaskEventType = "AllStepsCompleted"
	TaskEventAllStepsSuccessful  TaskEventType = "AllStepsSuccessful"
	TaskEventPermanentFailure    TaskEventType = "PermanentFailure" // Message
	TaskEventRetryReady          TaskEventType = "RetryReady"
	TaskEventTimeout             TaskEventType = "Timeout"
	TaskEventProcessorCrashed    TaskEventType = "ProcessorCrashed"
	TaskEventComplete            TaskEventType = "Complete" // legacy
	TaskEventFail                TaskEventType = "Fail"     // legacy; Message
	TaskEventResolveManually     TaskEventType = "ResolveManually"
	TaskEventReset               TaskEventType = "Reset" // legacy
)

// TaskEventTypes lists every task event variant.
func TaskEventTypes() []TaskEventType {
	return []TaskEventType{
		TaskEventStart, TaskEventCancel, TaskEventGiveUp, TaskEventManualResolution,
		TaskEventReadyStepsFound, TaskEventNoStepsFound, TaskEventNoDependenciesReady,
		TaskEventDependenciesReady, TaskEventStepsEnqueued, TaskEventEnqueueFailed,
		TaskEventStepCompleted, TaskEventStepFailed, TaskEventAllStepsCompleted,
		TaskEventAllStepsSuccessful, TaskEventPermanentFailure, TaskEventRetryReady,
		TaskEventTimeout, TaskEventProcessorCrashed, TaskEventComplete, TaskEventFail,
		TaskEventResolveManually, TaskEventReset,
	}
}

func (t TaskEventType) payload() payloadKind {
	switch t {
	case TaskEventStart, TaskEventCancel, TaskEventGiveUp, TaskEventManualResolution,
		TaskEventNoStepsFound, TaskEventNoDependenciesReady, TaskEventDependenciesReady,
		TaskEventAllStepsCompleted, TaskEventAllStepsSuccessful, TaskEventRetryReady,
		TaskEventTimeout, TaskEventProcessorCrashed, TaskEventComplete,
		TaskEventResolveManually, TaskEventReset:
		return payloadNone
	case TaskEventReadyStepsFound:
		return payloadCount
	case TaskEventStepsEnqueued:
		return payloadUUIDSet
	case TaskEventStepCompleted, TaskEventStepFailed:
		return payloadUUID
	case TaskEventEnqueueFailed, TaskEventPermanentFailure, TaskEventFail:
		return payloadString
	}
	return payloadInvalid
}

// Valid reports whether t is a known task event variant.
func (t TaskEventType) Valid() bool { return t.payload() != payloadInvalid }

// TaskEvent is tasker-core's TaskEvent: a variant and its payload. Only the payload field that
// belongs to Type is used.
type TaskEvent struct {
	Type      TaskEventType
	Count     uint32      // ReadyStepsFound
	StepUUIDs []uuid.UUID // StepsEnqueued
	StepUUID  uuid.UUID   // StepCompleted, StepFailed
	Message   string      // EnqueueFailed, PermanentFailure, Fail
}

// TaskEventOf returns the payload-free event of type t.
func TaskEventOf(t TaskEventType) TaskEvent { return TaskEvent{Type: t} }

// ReadyStepsFound returns the ReadyStepsFound(n) event.
func ReadyStepsFound(n uint32) TaskEvent {
	return TaskEvent{Type: TaskEventReadyStepsFound, Count: n}
}

// StepsEnqueued returns the StepsEnqueued(step_uuids) event.
func StepsEnqueued(steps []uuid.UUID) TaskEvent {
	return TaskEvent{Type: TaskEventStepsEnqueued, StepUUIDs: steps}
}

// StepCompleted returns the StepCompleted(step_uuid) event (sent for success and failure results).
func StepCompleted(step uuid.UUID) TaskEvent {
	return TaskEvent{Type: TaskEventStepCompleted, StepUUID: step}
}

// TaskEventWithMessage returns an event of type t carrying msg (EnqueueFailed,
// PermanentFailure, Fail).
func TaskEventWithMessage(t TaskEventType, msg string) TaskEvent {
	return TaskEvent{Type: t, Message: msg}
}

// String renders the event as Rust's Debug formatting does, which is what tasker-core stores in
// task_transitions.metadata->>'event': Start, ReadyStepsFound(2), StepsEnqueued([uuid, uuid]),
// StepCompleted(uuid), PermanentFailure("msg").
func (e TaskEvent) String() string {
	var b strings.Builder
	b.WriteString(string(e.Type))
	switch e.Type.payload() {
	case payloadCount:
		b.WriteString("(" + strconv.FormatUint(uint64(e.Count), 10) + ")")
	case payloadUUID:
		b.WriteString("(" + e.StepUUID.String() + ")")
	case payloadUUIDSet:
		b.WriteString("([")
		for i, u := range e.StepUUIDs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(u.String())
		}
		b.WriteString("])")
	case payloadString:
		b.WriteString("(" + rustDebugString(e.Message) + ")")
	}
	return b.String()
}

// MarshalJSON encodes the event in serde's adjacently tagged form (as tasker-core serializes a
// TaskEvent): {"type":"Start"}, {"type":"ReadyStepsFound","data":2}.
func (e TaskEvent) MarshalJSON() ([]byte, error) {
	out := adjacent{Type: string(e.Type)}
	var (
		data any
		err  error
	)
	switch e.Type.payload() {
	case payloadNone:
	case payloadCount:
		data = e.Count
	case payloadUUID:
		data = e.StepUUID
	case payloadUUIDSet:
		ids := e.StepUUIDs
		if ids == nil {
			ids = []uuid.UUID{}
		}
		data = ids
	case payloadString:
		data = e.Message
	default:
		return nil, fmt.Errorf("state: unknown task event type %q", e.Type)
	}
	if data != nil {
		if out.Data, err = json.Marshal(data); err != nil {
			return nil, err
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes the adjacently tagged form.
func (e *TaskEvent) UnmarshalJSON(b []byte) error {
	var in adjacent
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("state: decode task event: %w", err)
	}
	ev := TaskEvent{Type: TaskEventType(in.Type)}
	kind := ev.Type.payload()
	if kind == payloadInvalid {
		return fmt.Errorf("state: unknown task event type %q", in.Type)
	}
	if kind == payloadNone {
		if !isJSONNull(in.Data) {
			return fmt.Errorf("state: task event %s takes no data", in.Type)
		}
		*e = ev
		return nil
	}
	if isJSONNull(in.Data) {
		return fmt.Errorf("state: task event %s needs data", in.Type)
	}
	var err error
	switch kind {
	case payloadCount:
		err = json.Unmarshal(in.Data, &ev.Count)
	case payloadUUID:
		err = json.Unmarshal(in.Data, &ev.StepUUID)
	case payloadUUIDSet:
		err = json.Unmarshal(in.Data, &ev.StepUUIDs)
	case payloadString:
		err = json.Unmarshal(in.Data, &ev.Message)
	}
	if err != nil {
		return fmt.Errorf("state: decode task event %s data: %w", in.Type, err)
	}
	*e = ev
	return nil
}

func isJSONNull(b json.RawMessage) bool {
	t := bytes.TrimSpace(b)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// rustDebugString quotes s as Rust's <str as Debug> does: \" \\ \n \r \t \0 escaped, other
// non-printable characters as \u{hex}; single quotes and printable Unicode left as is.
func rustDebugString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\u{fffd}`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == 0:
			b.WriteString(`\0`)
		case !unicode.IsGraphic(r):
			fmt.Fprintf(&b, `\u{%x}`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
