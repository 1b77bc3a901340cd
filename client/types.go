package client

import "encoding/json"

// The types below decode the API's JSON (tasker-core's serde types, see package api). Only the
// fields the CLI shows are declared; timestamps stay in the API's string form.

// Task is tasker-core's TaskResponse.
type Task struct {
	TaskUUID             string  `json:"task_uuid"`
	Name                 string  `json:"name"`
	Namespace            string  `json:"namespace"`
	Version              string  `json:"version"`
	Status               string  `json:"status"`
	CreatedAt            string  `json:"created_at"`
	CompletedAt          *string `json:"completed_at"`
	TotalSteps           int64   `json:"total_steps"`
	CompletedSteps       int64   `json:"completed_steps"`
	FailedSteps          int64   `json:"failed_steps"`
	ExecutionStatus      string  `json:"execution_status"`
	CompletionPercentage float64 `json:"completion_percentage"`
	Steps                []struct {
		WorkflowStepUUID string `json:"workflow_step_uuid"`
		Name             string `json:"name"`
		CurrentState     string `json:"current_state"`
	} `json:"steps"`
}

// TaskList is tasker-core's TaskListResponse.
type TaskList struct {
	Tasks      []Task `json:"tasks"`
	Pagination struct {
		Page       uint32 `json:"page"`
		PerPage    uint32 `json:"per_page"`
		TotalCount uint64 `json:"total_count"`
		TotalPages uint32 `json:"total_pages"`
		HasNext    bool   `json:"has_next"`
	} `json:"pagination"`
}

// Step is tasker-core's StepResponse.
type Step struct {
	StepUUID        string          `json:"step_uuid"`
	TaskUUID        string          `json:"task_uuid"`
	Name            string          `json:"name"`
	CreatedAt       string          `json:"created_at"`
	CompletedAt     *string         `json:"completed_at"`
	Results         json.RawMessage `json:"results"`
	CurrentState    string          `json:"current_state"`
	Attempts        int32           `json:"attempts"`
	MaxAttempts     int32           `json:"max_attempts"`
	NextRetryAt     *string         `json:"next_retry_at"`
	LastAttemptedAt *string         `json:"last_attempted_at"`
}

// Summary is the part of tasker-core's TaskSummaryResponse the CLI uses: the template's steps
// and their dependencies.
type Summary struct {
	Template struct {
		Steps []struct {
			Name         string   `json:"name"`
			Dependencies []string `json:"dependencies"`
			Retryable    bool     `json:"retryable"`
		} `json:"steps"`
	} `json:"template"`
}

// ManualCompletionData is tasker-core's ManualCompletionData.
type ManualCompletionData struct {
	Result   json.RawMessage `json:"result"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// ManualAction is tasker-core's StepManualAction (action_type reset_for_retry with reset_by,
// resolve_manually with resolved_by, complete_manually with completion_data and completed_by).
type ManualAction struct {
	ActionType     string                `json:"action_type"`
	Reason         string                `json:"reason"`
	ResetBy        string                `json:"reset_by,omitempty"`
	ResolvedBy     string                `json:"resolved_by,omitempty"`
	CompletedBy    string                `json:"completed_by,omitempty"`
	CompletionData *ManualCompletionData `json:"completion_data,omitempty"`
}

// DLQEntry is tasker-core's DlqEntry (reason and status in its CamelCase spelling).
type DLQEntry struct {
	DLQEntryUUID     string          `json:"dlq_entry_uuid"`
	TaskUUID         string          `json:"task_uuid"`
	OriginalState    string          `json:"original_state"`
	DLQReason        string          `json:"dlq_reason"`
	DLQTimestamp     string          `json:"dlq_timestamp"`
	ResolutionStatus string          `json:"resolution_status"`
	ResolutionNotes  *string         `json:"resolution_notes"`
	ResolvedBy       *string         `json:"resolved_by"`
	TaskSnapshot     json.RawMessage `json:"task_snapshot"`
}

// DLQUpdate is tasker-core's UpdateInvestigationRequest; nil fields are left unchanged.
type DLQUpdate struct {
	ResolutionStatus *string         `json:"resolution_status,omitempty"`
	ResolutionNotes  *string         `json:"resolution_notes,omitempty"`
	ResolvedBy       *string         `json:"resolved_by,omitempty"`
	Metadata         json.RawMessage `json:"metadata,omitempty"`
}

// DLQUpdated is the answer to a DLQ update.
type DLQUpdated struct {
	Success      bool   `json:"success"`
	Message      string `json:"message"`
	DLQEntryUUID string `json:"dlq_entry_uuid"`
}

// DLQStats is tasker-core's DlqStats, one row per reason.
type DLQStats struct {
	DLQReason         string  `json:"dlq_reason"`
	TotalEntries      int64   `json:"total_entries"`
	Pending           int64   `json:"pending"`
	ManuallyResolved  int64   `json:"manually_resolved"`
	PermanentFailures int64   `json:"permanent_failures"`
	Cancelled         int64   `json:"cancelled"`
	OldestEntry       *string `json:"oldest_entry"`
	NewestEntry       *string `json:"newest_entry"`
}
