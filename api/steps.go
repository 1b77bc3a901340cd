package api

import (
	"errors"
	"net/http"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
)

func (a *API) mountSteps(mux *http.ServeMux) {
	const stepPath = "/v1/tasks/{uuid}/workflow_steps/{step_uuid}"
	badUUID := Response{http.StatusBadRequest, "Invalid task or step UUID (BAD_REQUEST)", nil}
	notFound := Response{http.StatusNotFound, "Step not found, or it belongs to another task", nil}
	a.handle(mux, Route{Method: "GET", Path: "/v1/tasks/{uuid}/workflow_steps", Resource: "steps", Action: "list",
		Tag: "workflow_steps", Summary: "The task's workflow steps in creation order",
		Responses: []Response{{http.StatusOK, "List of workflow steps", []StepResponse{}}, badUUID,
			{http.StatusNotFound, "Task not found", nil}}}, a.listSteps)
	a.handle(mux, Route{Method: "GET", Path: stepPath, Resource: "steps", Action: "read", Tag: "workflow_steps",
		Summary:   "One workflow step with its readiness",
		Responses: []Response{{http.StatusOK, "Workflow step details", StepResponse{}}, badUUID, notFound}}, a.getStep)
	a.handle(mux, Route{Method: "PATCH", Path: stepPath, Resource: "steps", Action: "resolve", Tag: "workflow_steps",
		Summary: "Operator action on a step: reset_for_retry, resolve_manually or complete_manually",
		Body:    StepManualAction{},
		Responses: []Response{{http.StatusOK, "The step after the action", StepResponse{}},
			{http.StatusBadRequest, "Invalid UUID or body, or the step's state does not allow the action", nil}, notFound}},
		a.resolveStep)
	a.handle(mux, Route{Method: "GET", Path: stepPath + "/audit", Resource: "steps", Action: "read", Tag: "workflow_steps",
		Summary:   "The step's result audit trail, newest first",
		Responses: []Response{{http.StatusOK, "Audit history", []StepAuditResponse{}}, badUUID, notFound}}, a.getStepAudit)
}

// stepUUIDs parses {uuid} and {step_uuid} as tasker-core's step handlers do: BAD_REQUEST with
// "Invalid task UUID format" / "Invalid step UUID format" (not INVALID_UUID).
func stepUUIDs(r *http.Request, withStep bool) (task, step uuid.UUID, ae *apiError) {
	task, err := uuid.Parse(r.PathValue("uuid"))
	if err != nil {
		return task, step, errBadRequest("Invalid task UUID format")
	}
	if withStep {
		if step, err = uuid.Parse(r.PathValue("step_uuid")); err != nil {
			return task, step, errBadRequest("Invalid step UUID format")
		}
	}
	return task, step, nil
}

// stepError maps orchestration's step errors to tasker-core's answers.
func stepError(err error) error {
	var mae *orchestration.ManualActionError
	switch {
	case errors.Is(err, orchestration.ErrStepNotInTask):
		return errNotFound("Step does not belong to the specified task")
	case errors.Is(err, orchestration.ErrStepNotFound), errors.Is(err, orchestration.ErrTaskNotFound):
		return errResourceNotFound
	case errors.As(err, &mae):
		return errBadRequest(mae.Error())
	}
	return err
}

func (a *API) listSteps(w http.ResponseWriter, r *http.Request) {
	task, _, ae := stepUUIDs(r, false)
	if ae != nil {
		writeError(w, ae)
		return
	}
	steps, err := a.orch.TaskSteps(r.Context(), task)
	if err != nil {
		a.fail(w, r, stepError(err))
		return
	}
	out := make([]StepResponse, 0, len(steps))
	for _, s := range steps {
		out = append(out, stepResponse(s))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getStep(w http.ResponseWriter, r *http.Request) {
	task, step, ae := stepUUIDs(r, true)
	if ae != nil {
		writeError(w, ae)
		return
	}
	s, err := a.orch.Step(r.Context(), task, step)
	if err != nil {
		a.fail(w, r, stepError(err))
		return
	}
	writeJSON(w, http.StatusOK, stepResponse(*s))
}

func (a *API) resolveStep(w http.ResponseWriter, r *http.Request) {
	task, step, ae := stepUUIDs(r, true)
	if ae != nil {
		writeError(w, ae)
		return
	}
	body, err := protocol.ReadLimited(r.Body, "request body", protocol.MaxTaskRequestBytes)
	if err != nil {
		a.fail(w, r, taskError(err))
		return
	}
	action, err := decodeManualAction(body)
	if err != nil {
		writeError(w, errBadRequest(err.Error()))
		return
	}
	out, err := a.orch.ResolveStep(r.Context(), task, step, action)
	if err != nil {
		a.fail(w, r, stepError(err))
		return
	}
	writeJSON(w, http.StatusOK, stepResponse(out.Step))
}

func (a *API) getStepAudit(w http.ResponseWriter, r *http.Request) {
	task, step, ae := stepUUIDs(r, true)
	if ae != nil {
		writeError(w, ae)
		return
	}
	recs, err := a.orch.StepAudit(r.Context(), task, step)
	if err != nil {
		a.fail(w, r, stepError(err))
		return
	}
	out := make([]StepAuditResponse, 0, len(recs))
	for _, rec := range recs {
		out = append(out, auditResponse(rec))
	}
	writeJSON(w, http.StatusOK, out)
}
