package protocol

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// NaiveTime is a `timestamp without time zone` column holding UTC, serialized the way chrono
// serializes NaiveDateTime: "2026-03-21T21:16:08.123456" (no offset; 0, 3, 6 or 9 fraction digits).
type NaiveTime struct{ time.Time }

// NewNaiveTime returns t converted to UTC.
func NewNaiveTime(t time.Time) NaiveTime { return NaiveTime{t.UTC()} }

// String formats the time like chrono's NaiveDateTime.
func (t NaiveTime) String() string {
	u := t.UTC()
	base := u.Format("2006-01-02T15:04:05")
	ns := u.Nanosecond()
	switch {
	case ns == 0:
		return base
	case ns%1_000_000 == 0:
		return fmt.Sprintf("%s.%03d", base, ns/1_000_000)
	case ns%1_000 == 0:
		return fmt.Sprintf("%s.%06d", base, ns/1_000)
	default:
		return fmt.Sprintf("%s.%09d", base, ns)
	}
}

// RFC3339 formats t as chrono's DateTime<Utc>::to_rfc3339 does: UTC with a "+00:00" offset and
// 0, 3, 6 or 9 fraction digits, whichever is the shortest exact form.
func RFC3339(t time.Time) string { return NewNaiveTime(t).String() + "+00:00" }

// UTCZ formats t as chrono's DateTime<Utc> serializes through serde: like RFC3339 but with "Z".
func UTCZ(t time.Time) string { return NewNaiveTime(t).String() + "Z" }

// MarshalJSON writes the chrono NaiveDateTime form.
func (t NaiveTime) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// UnmarshalJSON reads a naive timestamp ("T" or space separator, any fraction). A value with an
// offset is also accepted and converted to UTC.
func (t *NaiveTime) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("protocol: naive timestamp: %w", err)
	}
	parsed, err := ParseNaiveTime(s)
	if err != nil {
		return err
	}
	*t = parsed
	return nil
}

// ParseNaiveTime parses the forms NaiveTime.UnmarshalJSON accepts. Times whose UTC year falls
// outside 0000–9999 are refused: they have no four-digit form to be written back in.
func ParseNaiveTime(s string) (NaiveTime, error) {
	norm := strings.Replace(s, " ", "T", 1)
	v, err := time.Parse("2006-01-02T15:04:05.999999999", norm)
	if err != nil {
		if v, err = time.Parse(time.RFC3339Nano, norm); err != nil {
			return NaiveTime{}, fmt.Errorf("protocol: naive timestamp: cannot parse %q", s)
		}
		v = v.UTC()
	}
	if y := v.Year(); y < 0 || y > 9999 {
		return NaiveTime{}, fmt.Errorf("protocol: naive timestamp %q: year %d in UTC is outside 0000-9999", s, y)
	}
	return NaiveTime{v}, nil
}

// Task is a tasker.tasks row as tasker-core serializes it. Context and Tags are raw JSON
// (nil marshals as null).
type Task struct {
	TaskUUID            uuid.UUID       `json:"task_uuid"`
	NamedTaskUUID       uuid.UUID       `json:"named_task_uuid"`
	Complete            bool            `json:"complete"`
	RequestedAt         NaiveTime       `json:"requested_at"`
	Initiator           *string         `json:"initiator"`
	SourceSystem        *string         `json:"source_system"`
	Reason              *string         `json:"reason"`
	Tags                json.RawMessage `json:"tags"`
	Context             json.RawMessage `json:"context"`
	IdentityHash        string          `json:"identity_hash"`
	Priority            int32           `json:"priority"`
	CreatedAt           NaiveTime       `json:"created_at"`
	UpdatedAt           NaiveTime       `json:"updated_at"`
	CorrelationID       uuid.UUID       `json:"correlation_id"`
	ParentCorrelationID *uuid.UUID      `json:"parent_correlation_id"`
}

// MarshalJSON writes null for nil raw values.
func (t Task) MarshalJSON() ([]byte, error) {
	type plain Task
	p := plain(t)
	p.Tags = orNull(p.Tags)
	p.Context = orNull(p.Context)
	return json.Marshal(p)
}

// TaskForOrchestration is a task row with its template identity.
type TaskForOrchestration struct {
	Task          Task   `json:"task"`
	TaskName      string `json:"task_name"`
	TaskVersion   string `json:"task_version"`
	NamespaceName string `json:"namespace_name"`
}

// WorkflowStepWithName is a tasker.workflow_steps row joined with its named step. Attempts is
// the value loaded before the claim (nil on the first execution). TemplateStepName is
// inputs->>'__template_step_name' for dynamically created steps, else Name.
type WorkflowStepWithName struct {
	WorkflowStepUUID      uuid.UUID       `json:"workflow_step_uuid"`
	TaskUUID              uuid.UUID       `json:"task_uuid"`
	NamedStepUUID         uuid.UUID       `json:"named_step_uuid"`
	Name                  string          `json:"name"`
	TemplateStepName      string          `json:"template_step_name"`
	Retryable             bool            `json:"retryable"`
	MaxAttempts           *int32          `json:"max_attempts"`
	InProcess             bool            `json:"in_process"`
	Processed             bool            `json:"processed"`
	ProcessedAt           *NaiveTime      `json:"processed_at"`
	Attempts              *int32          `json:"attempts"`
	LastAttemptedAt       *NaiveTime      `json:"last_attempted_at"`
	BackoffRequestSeconds *int32          `json:"backoff_request_seconds"`
	Inputs                json.RawMessage `json:"inputs"`
	Results               json.RawMessage `json:"results"`
	Checkpoint            json.RawMessage `json:"checkpoint"`
	CreatedAt             NaiveTime       `json:"created_at"`
	UpdatedAt             NaiveTime       `json:"updated_at"`
}

// MarshalJSON writes null for nil raw values.
func (w WorkflowStepWithName) MarshalJSON() ([]byte, error) {
	type plain WorkflowStepWithName
	p := plain(w)
	p.Inputs = orNull(p.Inputs)
	p.Results = orNull(p.Results)
	p.Checkpoint = orNull(p.Checkpoint)
	return json.Marshal(p)
}

// UnmarshalJSON turns JSON null raw columns into nil so "absent" has one representation.
func (w *WorkflowStepWithName) UnmarshalJSON(data []byte) error {
	type plain WorkflowStepWithName
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	p.Inputs = nullToNil(p.Inputs)
	p.Results = nullToNil(p.Results)
	p.Checkpoint = nullToNil(p.Checkpoint)
	*w = WorkflowStepWithName(p)
	return nil
}

// TaskSequenceStep is everything a handler is hydrated with: the task, the step row, the results
// of finished ancestor steps keyed by step name, and the template step definition. It is also
// embedded in domain event envelopes.
type TaskSequenceStep struct {
	Task              TaskForOrchestration           `json:"task"`
	WorkflowStep      WorkflowStepWithName           `json:"workflow_step"`
	DependencyResults map[string]StepExecutionResult `json:"dependency_results"`
	StepDefinition    StepDefinition                 `json:"step_definition"`
}

// MarshalJSON writes dependency_results as an object even when nil.
func (s TaskSequenceStep) MarshalJSON() ([]byte, error) {
	type plain TaskSequenceStep
	p := plain(s)
	if p.DependencyResults == nil {
		p.DependencyResults = map[string]StepExecutionResult{}
	}
	return json.Marshal(p)
}

// UnmarshalJSON turns JSON null context/tags into nil.
func (t *Task) UnmarshalJSON(data []byte) error {
	type plain Task
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	p.Tags = nullToNil(p.Tags)
	p.Context = nullToNil(p.Context)
	*t = Task(p)
	return nil
}
