package cli

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/client"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
)

// remoteStatus reads what task status shows from the REST API (the task, its workflow steps and
// its summary) into the values the direct path prints. Step parents come from the template's
// dependencies (the API does not expose workflow_step_edges), so a step created at run time
// whose name is not in the template is shown as a root.
func remoteStatus(ctx context.Context, c *client.Client, id uuid.UUID) (*orchestration.TaskStatus, map[uuid.UUID][]uuid.UUID, error) {
	t, _, err := c.Task(ctx, id.String())
	if err != nil {
		return nil, nil, taskNotFound(err, id)
	}
	steps, _, err := c.Steps(ctx, id.String())
	if err != nil {
		return nil, nil, err
	}
	sum, _, err := c.Summary(ctx, id.String())
	if err != nil {
		return nil, nil, err
	}
	st := &orchestration.TaskStatus{
		TaskUUID: id, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: state.TaskState(t.Status),
		Execution: orchestration.ExecutionContext{ExecutionStatus: t.ExecutionStatus, CompletedSteps: t.CompletedSteps,
			TotalSteps: t.TotalSteps, CompletionPercentage: t.CompletionPercentage},
	}
	deps := map[string][]string{}
	retryable := map[string]bool{}
	for _, ts := range sum.Template.Steps {
		deps[ts.Name], retryable[ts.Name] = ts.Dependencies, ts.Retryable
	}
	byName := map[string]uuid.UUID{}
	for _, s := range steps {
		sid, err := uuid.Parse(s.StepUUID)
		if err != nil {
			return nil, nil, err
		}
		ss := orchestration.StepStatus{
			StepUUID: sid, Name: s.Name, State: state.StepState(s.CurrentState), Attempts: int(s.Attempts),
			MaxAttempts: int(s.MaxAttempts), Retryable: retryable[s.Name], Results: s.Results,
			ProcessedAt: parseAPITime(s.CompletedAt), NextRetryAt: parseAPITime(s.NextRetryAt),
			LastAttemptedAt: parseAPITime(s.LastAttemptedAt), Processed: s.CompletedAt != nil,
		}
		if c := parseAPITime(&s.CreatedAt); c != nil {
			ss.CreatedAt = *c
		}
		ss.ApplyRetryOutlook()
		st.Steps = append(st.Steps, ss)
		byName[s.Name] = sid
	}
	parents := map[uuid.UUID][]uuid.UUID{}
	for _, s := range st.Steps {
		for _, d := range deps[s.Name] {
			if p, ok := byName[d]; ok {
				parents[s.StepUUID] = append(parents[s.StepUUID], p)
			}
		}
	}
	return st, parents, nil
}

func parseAPITime(s *string) *time.Time {
	if s == nil {
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, *s); err == nil {
			return &t
		}
	}
	return nil
}
