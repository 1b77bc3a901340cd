package api

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
)

// Wire types of tasker-core's orchestration API (crates/tasker-shared/src/types/api/
// orchestration.rs and the types it embeds). Field order and names follow the serde structs.

// utcTime is a chrono DateTime<Utc>: RFC 3339 with "Z" and 0, 3, 6 or 9 fraction digits.
type utcTime time.Time

func (t utcTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(protocol.NewNaiveTime(time.Time(t)).String() + "Z")
}

func utcPtr(t *time.Time) *utcTime {
	if t == nil {
		return nil
	}
	u := utcTime(*t)
	return &u
}

func naivePtr(t *time.Time) *protocol.NaiveTime {
	if t == nil {
		return nil
	}
	n := protocol.NewNaiveTime(*t)
	return &n
}

// microZ is tasker-core's "%Y-%m-%dT%H:%M:%S%.6fZ" string form (StepResponse, audit records).
func microZ(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") + "Z" }

func microZPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := microZ(*t)
	return &s
}

// pgJSONTime is how PostgreSQL's json_build_object writes a timestamp without time zone
// (get_task_summary's step fields): ISO 8601, microseconds with trailing zeros dropped.
func pgJSONTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05.999999")
	return &s
}

// StepReadinessStatus is tasker-core's sql_functions::StepReadinessStatus (TaskResponse.steps).
type StepReadinessStatus struct {
	WorkflowStepUUID      uuid.UUID           `json:"workflow_step_uuid"`
	TaskUUID              uuid.UUID           `json:"task_uuid"`
	NamedStepUUID         uuid.UUID           `json:"named_step_uuid"`
	Name                  string              `json:"name"`
	CurrentState          string              `json:"current_state"`
	DependenciesSatisfied bool                `json:"dependencies_satisfied"`
	RetryEligible         bool                `json:"retry_eligible"`
	ReadyForExecution     bool                `json:"ready_for_execution"`
	LastFailureAt         *protocol.NaiveTime `json:"last_failure_at"`
	NextRetryAt           *protocol.NaiveTime `json:"next_retry_at"`
	TotalParents          int32               `json:"total_parents"`
	CompletedParents      int32               `json:"completed_parents"`
	Attempts              int32               `json:"attempts"`
	MaxAttempts           int32               `json:"max_attempts"`
	BackoffRequestSeconds *int32              `json:"backoff_request_seconds"`
	LastAttemptedAt       *protocol.NaiveTime `json:"last_attempted_at"`
}

// TaskResponse is tasker-core's TaskResponse (POST/GET/DELETE /v1/tasks..., list items).
type TaskResponse struct {
	TaskUUID             string                `json:"task_uuid"`
	Name                 string                `json:"name"`
	Namespace            string                `json:"namespace"`
	Version              string                `json:"version"`
	Status               string                `json:"status"`
	CreatedAt            utcTime               `json:"created_at"`
	UpdatedAt            utcTime               `json:"updated_at"`
	CompletedAt          *utcTime              `json:"completed_at"`
	Context              json.RawMessage       `json:"context"`
	Initiator            string                `json:"initiator"`
	SourceSystem         string                `json:"source_system"`
	Reason               string                `json:"reason"`
	Priority             *int32                `json:"priority"`
	Tags                 []string              `json:"tags"`
	CorrelationID        uuid.UUID             `json:"correlation_id"`
	ParentCorrelationID  *uuid.UUID            `json:"parent_correlation_id"`
	TotalSteps           int64                 `json:"total_steps"`
	PendingSteps         int64                 `json:"pending_steps"`
	InProgressSteps      int64                 `json:"in_progress_steps"`
	CompletedSteps       int64                 `json:"completed_steps"`
	FailedSteps          int64                 `json:"failed_steps"`
	ReadySteps           int64                 `json:"ready_steps"`
	ExecutionStatus      string                `json:"execution_status"`
	RecommendedAction    string                `json:"recommended_action"`
	CompletionPercentage float64               `json:"completion_percentage"`
	HealthStatus         string                `json:"health_status"`
	Steps                []StepReadinessStatus `json:"steps"`
}

// PaginationInfo is tasker-core's models::core::task::PaginationInfo.
type PaginationInfo struct {
	Page        uint32 `json:"page"`
	PerPage     uint32 `json:"per_page"`
	TotalCount  uint64 `json:"total_count"`
	TotalPages  uint32 `json:"total_pages"`
	HasNext     bool   `json:"has_next"`
	HasPrevious bool   `json:"has_previous"`
}

// TaskListResponse is tasker-core's TaskListResponse (GET /v1/tasks).
type TaskListResponse struct {
	Tasks      []TaskResponse `json:"tasks"`
	Pagination PaginationInfo `json:"pagination"`
}

// StepResponse is tasker-core's StepResponse (workflow step routes).
type StepResponse struct {
	StepUUID              string          `json:"step_uuid"`
	TaskUUID              string          `json:"task_uuid"`
	Name                  string          `json:"name"`
	CreatedAt             string          `json:"created_at"`
	UpdatedAt             string          `json:"updated_at"`
	CompletedAt           *string         `json:"completed_at"`
	Results               json.RawMessage `json:"results"`
	CurrentState          string          `json:"current_state"`
	DependenciesSatisfied bool            `json:"dependencies_satisfied"`
	RetryEligible         bool            `json:"retry_eligible"`
	ReadyForExecution     bool            `json:"ready_for_execution"`
	TotalParents          int32           `json:"total_parents"`
	CompletedParents      int32           `json:"completed_parents"`
	Attempts              int32           `json:"attempts"`
	MaxAttempts           int32           `json:"max_attempts"`
	LastFailureAt         *string         `json:"last_failure_at"`
	NextRetryAt           *string         `json:"next_retry_at"`
	LastAttemptedAt       *string         `json:"last_attempted_at"`
}

// StepAuditResponse is tasker-core's StepAuditResponse (GET .../audit); optional fields are
// omitted when absent (skip_serializing_if).
type StepAuditResponse struct {
	AuditUUID        string          `json:"audit_uuid"`
	WorkflowStepUUID string          `json:"workflow_step_uuid"`
	TransitionUUID   string          `json:"transition_uuid"`
	TaskUUID         string          `json:"task_uuid"`
	RecordedAt       string          `json:"recorded_at"`
	WorkerUUID       *string         `json:"worker_uuid,omitempty"`
	CorrelationID    *string         `json:"correlation_id,omitempty"`
	Success          bool            `json:"success"`
	ExecutionTimeMs  *int64          `json:"execution_time_ms,omitempty"`
	Result           json.RawMessage `json:"result,omitempty"`
	StepName         string          `json:"step_name"`
	FromState        *string         `json:"from_state,omitempty"`
	ToState          string          `json:"to_state"`
}

// ManualCompletionData is tasker-core's ManualCompletionData.
type ManualCompletionData struct {
	Result   json.RawMessage `json:"result"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// StepManualAction is tasker-core's StepManualAction, tagged by action_type (PATCH body).
type StepManualAction struct {
	ActionType     string                `json:"action_type"`
	Reason         string                `json:"reason"`
	ResetBy        string                `json:"reset_by,omitempty"`
	ResolvedBy     string                `json:"resolved_by,omitempty"`
	CompletedBy    string                `json:"completed_by,omitempty"`
	CompletionData *ManualCompletionData `json:"completion_data,omitempty"`
}

// TaskSummaryResponse is tasker-core's TaskSummaryResponse (GET /v1/tasks/{uuid}/summary).
type TaskSummaryResponse struct {
	Task     TaskSummaryMetadata `json:"task"`
	Template TemplateSummary     `json:"template"`
	Steps    []StepSummaryInfo   `json:"steps"`
	DLQ      DlqSummaryInfo      `json:"dlq"`
	Links    TaskSummaryLinks    `json:"links"`
}

// TaskSummaryMetadata is tasker-core's TaskSummaryMetadata.
type TaskSummaryMetadata struct {
	TaskUUID             string    `json:"task_uuid"`
	Name                 string    `json:"name"`
	Namespace            string    `json:"namespace"`
	Version              string    `json:"version"`
	Status               string    `json:"status"`
	CreatedAt            utcTime   `json:"created_at"`
	UpdatedAt            utcTime   `json:"updated_at"`
	CompletedAt          *utcTime  `json:"completed_at"`
	Initiator            string    `json:"initiator"`
	SourceSystem         string    `json:"source_system"`
	Reason               string    `json:"reason"`
	CorrelationID        uuid.UUID `json:"correlation_id"`
	TotalSteps           int64     `json:"total_steps"`
	PendingSteps         int64     `json:"pending_steps"`
	InProgressSteps      int64     `json:"in_progress_steps"`
	CompletedSteps       int64     `json:"completed_steps"`
	FailedSteps          int64     `json:"failed_steps"`
	CompletionPercentage float64   `json:"completion_percentage"`
	HealthStatus         string    `json:"health_status"`
	ExecutionStatus      string    `json:"execution_status"`
	RecommendedAction    *string   `json:"recommended_action"`
}

// TemplateSummary is tasker-core's TemplateSummary (the summary's template steps).
type TemplateSummary struct {
	Steps []TemplateStepSummary `json:"steps"`
}

// TemplateStepSummary is tasker-core's TemplateStepSummary.
type TemplateStepSummary struct {
	Name         string   `json:"name"`
	StepType     string   `json:"step_type"`
	Handler      string   `json:"handler"`
	Dependencies []string `json:"dependencies"`
	Retryable    bool     `json:"retryable"`
	MaxAttempts  uint32   `json:"max_attempts"`
}

// StepSummaryInfo is tasker-core's StepSummaryInfo.
type StepSummaryInfo struct {
	StepUUID              string            `json:"step_uuid"`
	Name                  string            `json:"name"`
	CurrentState          string            `json:"current_state"`
	CreatedAt             *string           `json:"created_at"`
	CompletedAt           *string           `json:"completed_at"`
	LastAttemptedAt       *string           `json:"last_attempted_at"`
	Attempts              int32             `json:"attempts"`
	MaxAttempts           int32             `json:"max_attempts"`
	DependenciesSatisfied bool              `json:"dependencies_satisfied"`
	RetryEligible         bool              `json:"retry_eligible"`
	Error                 *StepErrorSummary `json:"error"`
}

// StepErrorSummary is tasker-core's StepErrorSummary.
type StepErrorSummary struct {
	ErrorType  *string `json:"error_type"`
	Retryable  bool    `json:"retryable"`
	StatusCode *uint16 `json:"status_code"`
}

// DlqSummaryInfo is tasker-core's DlqSummaryInfo.
type DlqSummaryInfo struct {
	InDLQ            bool    `json:"in_dlq"`
	DLQReason        *string `json:"dlq_reason"`
	ResolutionStatus *string `json:"resolution_status"`
}

// TaskSummaryLinks is tasker-core's TaskSummaryLinks.
type TaskSummaryLinks struct {
	Task  string `json:"task"`
	Steps string `json:"steps"`
	DLQ   string `json:"dlq"`
}

// orUnknown is tasker-core's unwrap_or_else(|| "unknown").
func orUnknown(s *string) string {
	if s == nil {
		return "unknown"
	}
	return *s
}

func orEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// tagStrings is tasker-core's tags conversion: a JSON array keeps its strings, anything else is
// null.
func tagStrings(raw json.RawMessage) []string {
	var arr []json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &arr) != nil || arr == nil {
		return nil
	}
	out := []string{}
	for _, v := range arr {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out = append(out, s)
		}
	}
	return out
}

func readinessOf(s orchestration.StepView) StepReadinessStatus {
	return StepReadinessStatus{
		WorkflowStepUUID: s.StepUUID, TaskUUID: s.TaskUUID, NamedStepUUID: s.NamedStepUUID, Name: s.Name,
		CurrentState: string(s.State), DependenciesSatisfied: s.DependenciesSatisfied,
		RetryEligible: s.RetryEligible, ReadyForExecution: s.ReadyForExecution,
		LastFailureAt: naivePtr(s.LastFailureAt), NextRetryAt: naivePtr(s.NextRetryAt),
		TotalParents: s.TotalParents, CompletedParents: s.CompletedParents, Attempts: s.Attempts,
		MaxAttempts: s.MaxAttempts, BackoffRequestSeconds: s.BackoffRequestSeconds,
		LastAttemptedAt: naivePtr(s.LastAttemptedAt),
	}
}

// taskResponse converts a TaskView as tasker-core's to_task_response does (defaults "unknown"
// for missing audit fields, {} for a missing context), except that completed_at is the task's
// (tasker-core always writes null).
func taskResponse(v *orchestration.TaskView) TaskResponse {
	ctx := v.Context
	if len(ctx) == 0 {
		ctx = json.RawMessage("{}")
	}
	p := v.Priority
	ec := v.Execution
	steps := make([]StepReadinessStatus, 0, len(v.Steps))
	for _, s := range v.Steps {
		steps = append(steps, readinessOf(s))
	}
	pct := ec.CompletionPercentage
	if math.IsNaN(pct) || math.IsInf(pct, 0) {
		pct = 0
	}
	return TaskResponse{
		TaskUUID: v.TaskUUID.String(), Name: v.Name, Namespace: v.Namespace, Version: v.Version,
		Status: string(v.State), CreatedAt: utcTime(v.CreatedAt), UpdatedAt: utcTime(v.UpdatedAt),
		CompletedAt: utcPtr(v.CompletedAt), Context: ctx, Initiator: orUnknown(v.Initiator),
		SourceSystem: orUnknown(v.SourceSystem), Reason: orUnknown(v.Reason), Priority: &p,
		Tags: tagStrings(v.Tags), CorrelationID: v.CorrelationID, ParentCorrelationID: v.ParentCorrelationID,
		TotalSteps: ec.TotalSteps, PendingSteps: ec.PendingSteps, InProgressSteps: ec.InProgressSteps,
		CompletedSteps: ec.CompletedSteps, FailedSteps: ec.FailedSteps, ReadySteps: ec.ReadySteps,
		ExecutionStatus: ec.ExecutionStatus, RecommendedAction: ec.RecommendedAction,
		CompletionPercentage: pct, HealthStatus: ec.HealthStatus, Steps: steps,
	}
}

// stepResponse converts a StepView as tasker-core's to_step_response does.
func stepResponse(s orchestration.StepView) StepResponse {
	return StepResponse{
		StepUUID: s.StepUUID.String(), TaskUUID: s.TaskUUID.String(), Name: s.Name,
		CreatedAt: microZ(s.CreatedAt), UpdatedAt: microZ(s.UpdatedAt), CompletedAt: microZPtr(s.ProcessedAt),
		Results: nullIfEmpty(s.Results), CurrentState: string(s.State),
		DependenciesSatisfied: s.DependenciesSatisfied, RetryEligible: s.RetryEligible,
		ReadyForExecution: s.ReadyForExecution, TotalParents: s.TotalParents,
		CompletedParents: s.CompletedParents, Attempts: s.Attempts, MaxAttempts: s.MaxAttempts,
		LastFailureAt: microZPtr(s.LastFailureAt), NextRetryAt: microZPtr(s.NextRetryAt),
		LastAttemptedAt: microZPtr(s.LastAttemptedAt),
	}
}

func nullIfEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

// auditResponse converts an audit record as tasker-core's from_audit_with_transition does:
// result is the transition's metadata "event" parsed as JSON, omitted when it is not JSON.
func auditResponse(a orchestration.StepAuditRecord) StepAuditResponse {
	out := StepAuditResponse{
		AuditUUID: a.AuditUUID.String(), WorkflowStepUUID: a.StepUUID.String(),
		TransitionUUID: a.TransitionUUID.String(), TaskUUID: a.TaskUUID.String(),
		RecordedAt: microZ(a.RecordedAt), Success: a.Success, ExecutionTimeMs: a.ExecutionTimeMs,
		StepName: a.StepName, FromState: a.FromState, ToState: a.ToState,
	}
	if a.WorkerUUID != nil {
		s := a.WorkerUUID.String()
		out.WorkerUUID = &s
	}
	if a.CorrelationID != nil {
		s := a.CorrelationID.String()
		out.CorrelationID = &s
	}
	if a.Event != nil && json.Valid([]byte(*a.Event)) {
		out.Result = json.RawMessage(*a.Event)
	}
	return out
}

// summaryResponse builds tasker-core's TaskSummaryResponse.
func summaryResponse(s *orchestration.TaskSummary) TaskSummaryResponse {
	v, ec := &s.Task, s.Task.Execution
	id := v.TaskUUID.String()
	ra := ec.RecommendedAction
	out := TaskSummaryResponse{
		Task: TaskSummaryMetadata{
			TaskUUID: id, Name: v.Name, Namespace: v.Namespace, Version: v.Version, Status: string(v.State),
			CreatedAt: utcTime(v.CreatedAt), UpdatedAt: utcTime(v.UpdatedAt), CompletedAt: utcPtr(v.CompletedAt),
			Initiator: orEmpty(v.Initiator), SourceSystem: orEmpty(v.SourceSystem), Reason: orEmpty(v.Reason),
			CorrelationID: v.CorrelationID, TotalSteps: ec.TotalSteps, PendingSteps: ec.PendingSteps,
			InProgressSteps: ec.InProgressSteps, CompletedSteps: ec.CompletedSteps, FailedSteps: ec.FailedSteps,
			CompletionPercentage: ec.CompletionPercentage, HealthStatus: ec.HealthStatus,
			ExecutionStatus: ec.ExecutionStatus, RecommendedAction: &ra,
		},
		Template: templateSummary(s.TemplateConfiguration),
		Steps:    make([]StepSummaryInfo, 0, len(v.Steps)),
		DLQ:      DlqSummaryInfo{InDLQ: s.InDLQ, DLQReason: s.DLQReason, ResolutionStatus: s.DLQResolution},
		Links: TaskSummaryLinks{Task: "/v1/tasks/" + id, Steps: "/v1/tasks/" + id + "/workflow_steps",
			DLQ: "/v1/dlq"},
	}
	for _, st := range v.Steps {
		out.Steps = append(out.Steps, StepSummaryInfo{
			StepUUID: st.StepUUID.String(), Name: st.Name, CurrentState: string(st.State),
			CreatedAt: pgJSONTime(&st.CreatedAt), CompletedAt: pgJSONTime(st.ProcessedAt),
			LastAttemptedAt: pgJSONTime(st.LastAttemptedAt), Attempts: st.Attempts, MaxAttempts: st.MaxAttempts,
			DependenciesSatisfied: st.DependenciesSatisfied, RetryEligible: st.RetryEligible,
			Error: stepErrorSummary(st.Results),
		})
	}
	return out
}

// stepErrorSummary reads the error object of stored step results: its error_type (tasker-core's
// SQL reads error.type, a key StepExecutionError never has), retryable and status_code. Nil
// when the results hold no error object.
func stepErrorSummary(results json.RawMessage) *StepErrorSummary {
	var r struct {
		Error *struct {
			ErrorType  *string `json:"error_type"`
			Type       *string `json:"type"`
			Retryable  bool    `json:"retryable"`
			StatusCode *uint16 `json:"status_code"`
		} `json:"error"`
	}
	if len(results) == 0 || json.Unmarshal(results, &r) != nil || r.Error == nil {
		return nil
	}
	et := r.Error.ErrorType
	if et == nil {
		et = r.Error.Type
	}
	return &StepErrorSummary{ErrorType: et, Retryable: r.Error.Retryable, StatusCode: r.Error.StatusCode}
}

// templateSummary extracts the template's steps as tasker-core's extract_template_summary does
// (handler "unknown", type "standard", retryable true and max_attempts 3 when absent).
func templateSummary(cfg json.RawMessage) TemplateSummary {
	out := TemplateSummary{Steps: []TemplateStepSummary{}}
	var c struct {
		Steps []map[string]json.RawMessage `json:"steps"`
	}
	if len(cfg) == 0 || json.Unmarshal(cfg, &c) != nil {
		return out
	}
	for _, st := range c.Steps {
		var name string
		if json.Unmarshal(st["name"], &name) != nil {
			continue
		}
		ts := TemplateStepSummary{Name: name, StepType: "standard", Handler: "unknown",
			Dependencies: []string{}, Retryable: true, MaxAttempts: 3}
		var h struct {
			Callable *string `json:"callable"`
		}
		if json.Unmarshal(st["handler"], &h) == nil && h.Callable != nil {
			ts.Handler = *h.Callable
		}
		var typ string
		if json.Unmarshal(st["type"], &typ) == nil && typ != "" {
			ts.StepType = typ
		}
		var deps []json.RawMessage
		if json.Unmarshal(st["dependencies"], &deps) == nil {
			for _, d := range deps {
				var s string
				if json.Unmarshal(d, &s) == nil {
					ts.Dependencies = append(ts.Dependencies, s)
				}
			}
		}
		var retry struct {
			Retryable   *bool    `json:"retryable"`
			MaxAttempts *float64 `json:"max_attempts"`
		}
		if json.Unmarshal(st["retry"], &retry) == nil {
			if retry.Retryable != nil {
				ts.Retryable = *retry.Retryable
			}
			if m := retry.MaxAttempts; m != nil && *m >= 0 && *m == math.Trunc(*m) && *m <= math.MaxUint32 {
				ts.MaxAttempts = uint32(*m)
			}
		}
		out.Steps = append(out.Steps, ts)
	}
	return out
}

// decodeManualAction reads a PATCH body as serde deserializes StepManualAction: the
// action_type tag, then each variant's required fields (strings; completion_data with a result
// of any JSON, null included). Unknown fields are ignored.
func decodeManualAction(body []byte) (orchestration.ManualAction, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return orchestration.ManualAction{}, fmt.Errorf("invalid JSON body: %w", err)
	}
	str := func(key string) (string, error) {
		v, ok := raw[key]
		if !ok {
			return "", fmt.Errorf("missing field `%s`", key)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("field `%s`: expected a string", key)
		}
		return s, nil
	}
	typ, err := str("action_type")
	if err != nil {
		return orchestration.ManualAction{}, err
	}
	a := orchestration.ManualAction{Type: orchestration.ManualActionType(typ)}
	var byKey string
	switch a.Type {
	case orchestration.ActionResetForRetry:
		byKey = "reset_by"
	case orchestration.ActionResolveManually:
		byKey = "resolved_by"
	case orchestration.ActionCompleteManually:
		byKey = "completed_by"
		cd, ok := raw["completion_data"]
		if !ok {
			return a, fmt.Errorf("missing field `completion_data`")
		}
		var data map[string]json.RawMessage
		if err := json.Unmarshal(cd, &data); err != nil || data == nil {
			return a, fmt.Errorf("field `completion_data`: expected an object")
		}
		if a.Result = data["result"]; a.Result == nil {
			return a, fmt.Errorf("completion_data: missing field `result`")
		}
		a.Metadata = data["metadata"]
	default:
		return a, fmt.Errorf("unknown variant `%s`, expected one of `reset_for_retry`, `resolve_manually`, `complete_manually`", typ)
	}
	if a.Reason, err = str("reason"); err != nil {
		return a, err
	}
	if a.By, err = str(byKey); err != nil {
		return a, err
	}
	return a, nil
}

// TaskRequest documents the POST /v1/tasks body (tasker-core's TaskRequest) in the OpenAPI
// document; the handler decodes with orchestration.ReadTaskRequest. Fields marked omitempty
// have defaults: version the latest registered, context {}, initiator "system", source_system
// "tasker-go", reason "Task requested", priority 0, correlation_id a new UUIDv7, requested_at
// now.
type TaskRequest struct {
	Name                string                     `json:"name"`
	Namespace           string                     `json:"namespace"`
	Version             string                     `json:"version,omitempty"`
	Context             json.RawMessage            `json:"context,omitempty"`
	Initiator           string                     `json:"initiator,omitempty"`
	SourceSystem        string                     `json:"source_system,omitempty"`
	Reason              string                     `json:"reason,omitempty"`
	Tags                []string                   `json:"tags,omitempty"`
	RequestedAt         *protocol.NaiveTime        `json:"requested_at,omitempty"`
	Options             map[string]json.RawMessage `json:"options,omitempty"`
	Priority            *int32                     `json:"priority,omitempty"`
	CorrelationID       *uuid.UUID                 `json:"correlation_id,omitempty"`
	ParentCorrelationID *uuid.UUID                 `json:"parent_correlation_id,omitempty"`
	IdempotencyKey      *string                    `json:"idempotency_key,omitempty"`
}
