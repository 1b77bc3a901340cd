package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// StepMessage is the three-UUID message on worker_<ns>_queue (orchestrator → worker) and on
// orchestration_step_results (worker → orchestrator). The result itself is never in the message.
type StepMessage struct {
	TaskUUID      uuid.UUID `json:"task_uuid"`
	StepUUID      uuid.UUID `json:"step_uuid"`
	CorrelationID uuid.UUID `json:"correlation_id"`
}

// ErrMissingField is wrapped by a MessageError whose field is absent.
var ErrMissingField = errors.New("missing field")

// ErrInvalidField is wrapped by a MessageError whose field is present but not a UUID string.
var ErrInvalidField = errors.New("invalid field")

// ErrMalformedMessage is wrapped by a MessageError when the payload is not a JSON object.
var ErrMalformedMessage = errors.New("malformed message")

// MessageError reports why a queue payload is not a valid StepMessage. Field is empty when the
// payload as a whole is malformed.
type MessageError struct {
	Field string
	Err   error // ErrMissingField, ErrInvalidField or ErrMalformedMessage
	Cause error // the underlying JSON or UUID parse error, if any
}

// Error describes the field and the reason.
func (e *MessageError) Error() string {
	msg := "protocol: step message: "
	if e.Field != "" {
		msg += e.Err.Error() + " " + e.Field
	} else {
		msg += e.Err.Error()
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap exposes both the sentinel and the cause to errors.Is / errors.As.
func (e *MessageError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

var stepMessageFields = [...]string{"task_uuid", "step_uuid", "correlation_id"}

// DecodeStepMessage parses a queue payload. Like serde, all three fields are required, each must
// be a UUID string (hyphenated, simple, braced or urn form), and unknown fields are ignored.
// A payload over MaxStepMessageBytes is refused unread. Every failure is a *MessageError; an
// oversized payload's is ErrMalformedMessage caused by a *SizeError (errors.Is ErrTooLarge).
func DecodeStepMessage(data []byte) (StepMessage, error) {
	if err := CheckSize("step message", int64(len(data)), MaxStepMessageBytes); err != nil {
		return StepMessage{}, &MessageError{Err: ErrMalformedMessage, Cause: err}
	}
	var raw map[string]json.RawMessage
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return StepMessage{}, &MessageError{Err: ErrMalformedMessage, Cause: errors.New("not a JSON object")}
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return StepMessage{}, &MessageError{Err: ErrMalformedMessage, Cause: err}
	}
	var ids [len(stepMessageFields)]uuid.UUID
	for i, field := range stepMessageFields {
		v, ok := raw[field]
		if !ok {
			return StepMessage{}, &MessageError{Field: field, Err: ErrMissingField}
		}
		id, err := parseUUIDValue(v)
		if err != nil {
			return StepMessage{}, &MessageError{Field: field, Err: ErrInvalidField, Cause: err}
		}
		ids[i] = id
	}
	return StepMessage{TaskUUID: ids[0], StepUUID: ids[1], CorrelationID: ids[2]}, nil
}

// UnmarshalJSON applies DecodeStepMessage's rules.
func (m *StepMessage) UnmarshalJSON(data []byte) error {
	msg, err := DecodeStepMessage(data)
	if err != nil {
		return err
	}
	*m = msg
	return nil
}

func parseUUIDValue(v json.RawMessage) (uuid.UUID, error) {
	var s string
	if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return uuid.Nil, errors.New("want a UUID string, got null")
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return uuid.Nil, fmt.Errorf("want a UUID string, got %s", truncate(v, 40))
	}
	return uuid.Parse(s)
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
