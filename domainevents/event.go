package domainevents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

// EventVersion is the event_version tasker-core writes on every envelope.
const EventVersion = "1.0"

// DomainEvent is the envelope tasker-core's DomainEvent serializes to (worker-protocol §9.4).
// Subscribers share one value per delivery path and must treat it as read-only.
type DomainEvent struct {
	EventID      uuid.UUID     `json:"event_id"`
	EventName    string        `json:"event_name"`
	EventVersion string        `json:"event_version"`
	Payload      EventPayload  `json:"payload"`
	Metadata     EventMetadata `json:"metadata"`
}

// EventPayload is the envelope's payload: the full step context, the execution result and the
// business payload the publisher produced.
type EventPayload struct {
	TaskSequenceStep protocol.TaskSequenceStep    `json:"task_sequence_step"`
	ExecutionResult  protocol.StepExecutionResult `json:"execution_result"`
	Payload          json.RawMessage              `json:"payload"` // nil marshals as null
}

// MarshalJSON writes a nil business payload as null.
func (p EventPayload) MarshalJSON() ([]byte, error) {
	type plain EventPayload
	q := plain(p)
	if len(q.Payload) == 0 {
		q.Payload = json.RawMessage("null")
	}
	return json.Marshal(q)
}

// EventMetadata is the envelope's metadata. Extra holds publisher-supplied additional metadata;
// it is written as further keys of the metadata object after the seven tasker-core keys (which
// it cannot override). tasker-core's reader ignores keys it does not know.
type EventMetadata struct {
	TaskUUID      uuid.UUID
	StepUUID      *uuid.UUID // null when not fired from a step
	StepName      *string
	Namespace     string
	CorrelationID uuid.UUID
	FiredAt       time.Time
	FiredBy       string
	Extra         map[string]json.RawMessage
}

type metadataJSON struct {
	TaskUUID      uuid.UUID        `json:"task_uuid"`
	StepUUID      *uuid.UUID       `json:"step_uuid"`
	StepName      *string          `json:"step_name"`
	Namespace     string           `json:"namespace"`
	CorrelationID uuid.UUID        `json:"correlation_id"`
	FiredAt       protocol.UTCTime `json:"fired_at"`
	FiredBy       string           `json:"fired_by"`
}

var reservedMetadataKeys = []string{"task_uuid", "step_uuid", "step_name", "namespace", "correlation_id", "fired_at", "fired_by"}

// IsReservedMetadataKey reports whether key is one of the seven metadata keys tasker-core
// defines (Extra entries with these keys are not written).
func IsReservedMetadataKey(key string) bool { return slices.Contains(reservedMetadataKeys, key) }

// MarshalJSON writes the tasker-core keys in their order (fired_at in chrono's UTC form), then
// the Extra keys sorted.
func (m EventMetadata) MarshalJSON() ([]byte, error) {
	base, err := json.Marshal(metadataJSON{m.TaskUUID, m.StepUUID, m.StepName, m.Namespace, m.CorrelationID, protocol.UTCTime(m.FiredAt), m.FiredBy})
	if err != nil || len(m.Extra) == 0 {
		return base, err
	}
	keys := make([]string, 0, len(m.Extra))
	for k := range m.Extra {
		if !IsReservedMetadataKey(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.Write(base[:len(base)-1])
	for _, k := range keys {
		kj, _ := json.Marshal(k)
		v := m.Extra[k]
		if len(v) == 0 {
			v = json.RawMessage("null")
		} else if !json.Valid(v) {
			return nil, fmt.Errorf("domainevents: metadata %q is not valid JSON", k)
		}
		buf.WriteByte(',')
		buf.Write(kj)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads the tasker-core keys and keeps any other key in Extra.
func (m *EventMetadata) UnmarshalJSON(data []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return fmt.Errorf("domainevents: event metadata: %w", err)
	}
	var j struct {
		TaskUUID      uuid.UUID  `json:"task_uuid"`
		StepUUID      *uuid.UUID `json:"step_uuid"`
		StepName      *string    `json:"step_name"`
		Namespace     string     `json:"namespace"`
		CorrelationID uuid.UUID  `json:"correlation_id"`
		FiredAt       time.Time  `json:"fired_at"`
		FiredBy       string     `json:"fired_by"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("domainevents: event metadata: %w", err)
	}
	*m = EventMetadata{TaskUUID: j.TaskUUID, StepUUID: j.StepUUID, StepName: j.StepName, Namespace: j.Namespace,
		CorrelationID: j.CorrelationID, FiredAt: j.FiredAt.UTC(), FiredBy: j.FiredBy}
	for k, v := range all {
		if !IsReservedMetadataKey(k) {
			if m.Extra == nil {
				m.Extra = map[string]json.RawMessage{}
			}
			m.Extra[k] = v
		}
	}
	return nil
}

// NewEvent builds the envelope for an event named name fired from the step in ec, with a fresh
// UUID v7 event_id and fired_at now, as tasker-core's publisher does: correlation_id is the
// task's, namespace the task's namespace, step_uuid / step_name the workflow step's.
func NewEvent(name string, ec *StepEventContext, payload json.RawMessage, firedBy string, extra map[string]json.RawMessage) (*DomainEvent, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("domainevents: event id: %w", err)
	}
	stepUUID := ec.StepUUID()
	stepName := ec.StepName()
	return &DomainEvent{
		EventID:      id,
		EventName:    name,
		EventVersion: EventVersion,
		Payload: EventPayload{
			TaskSequenceStep: ec.Step,
			ExecutionResult:  ec.Result,
			Payload:          payload,
		},
		Metadata: EventMetadata{
			TaskUUID:      ec.TaskUUID(),
			StepUUID:      &stepUUID,
			StepName:      &stepName,
			Namespace:     ec.Namespace(),
			CorrelationID: ec.CorrelationID(),
			FiredAt:       time.Now().UTC(),
			FiredBy:       firedBy,
			Extra:         extra,
		},
	}, nil
}

// DecodeEvent parses an envelope; it requires event_id and event_name.
func DecodeEvent(data []byte) (*DomainEvent, error) {
	var ev DomainEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("domainevents: decode event: %w", err)
	}
	if ev.EventID == uuid.Nil || ev.EventName == "" {
		return nil, fmt.Errorf("domainevents: decode event: event_id and event_name are required")
	}
	if len(ev.Payload.Payload) > 0 && bytes.Equal(bytes.TrimSpace(ev.Payload.Payload), []byte("null")) {
		ev.Payload.Payload = nil
	}
	return &ev, nil
}
