package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
)

func (a *API) mountTasks(mux *http.ServeMux) {
	notFound := Response{http.StatusNotFound, "Task not found", nil}
	badUUID := Response{http.StatusBadRequest, "Invalid task UUID (INVALID_UUID)", nil}
	a.handle(mux, Route{Method: "POST", Path: "/v1/tasks", Resource: "tasks", Action: "create", Tag: "tasks",
		Summary: "Create a task from a TaskRequest", Body: TaskRequest{},
		Responses: []Response{
			{http.StatusOK, "Task created", TaskResponse{}},
			{http.StatusBadRequest, "Invalid request", nil},
			{http.StatusNotFound, "Task template not found", nil},
			{http.StatusConflict, "A task with this identity already exists", nil},
			{http.StatusRequestEntityTooLarge, "Request body too large", nil},
		}}, a.createTask)
	a.handle(mux, Route{Method: "GET", Path: "/v1/tasks", Resource: "tasks", Action: "list", Tag: "tasks",
		Summary: "List tasks with filters and pagination, newest first",
		Query: []Param{
			{Name: "page", Type: "integer", Description: "Page number (default: 1)"},
			{Name: "per_page", Type: "integer", Description: "Items per page (default: 25, max: 100)"},
			{Name: "namespace", Type: "string", Description: "Filter by namespace"},
			{Name: "status", Type: "string", Description: "completed, pending (not complete), or a task state"},
			{Name: "initiator", Type: "string", Description: "Filter by initiator"},
			{Name: "source_system", Type: "string", Description: "Filter by source system"},
		},
		Responses: []Response{
			{http.StatusOK, "List of tasks", TaskListResponse{}},
			{http.StatusBadRequest, "Invalid query parameters", nil},
		}}, a.listTasks)
	a.handle(mux, Route{Method: "GET", Path: "/v1/tasks/{uuid}", Resource: "tasks", Action: "read", Tag: "tasks",
		Summary:   "Task details with execution context and step readiness",
		Responses: []Response{{http.StatusOK, "Task details", TaskResponse{}}, badUUID, notFound}}, a.getTask)
	a.handle(mux, Route{Method: "DELETE", Path: "/v1/tasks/{uuid}", Resource: "tasks", Action: "cancel", Tag: "tasks",
		Summary: "Cancel a task and its unfinished steps",
		Responses: []Response{{http.StatusOK, "Task cancelled", TaskResponse{}},
			{http.StatusBadRequest, "Invalid task UUID, or the task already finished", nil}, notFound}}, a.cancelTask)
	a.handle(mux, Route{Method: "GET", Path: "/v1/tasks/{uuid}/summary", Resource: "tasks", Action: "read", Tag: "tasks",
		Summary:   "Task summary for visualization (template steps, step states, DLQ status)",
		Responses: []Response{{http.StatusOK, "Task summary", TaskSummaryResponse{}}, badUUID, notFound}}, a.getTaskSummary)
}

// taskUUID parses the {uuid} path value as tasker-core's task handlers do (INVALID_UUID).
func taskUUID(r *http.Request) (uuid.UUID, *apiError) {
	raw := r.PathValue("uuid")
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, errInvalidUUID(raw)
	}
	return id, nil
}

// taskError maps orchestration's task errors to tasker-core's answers.
func taskError(err error) error {
	var (
		tnf *orchestration.TemplateNotFoundError
		ve  *orchestration.ValidationError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, protocol.ErrTooLarge), errors.As(err, &mbe):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large", Message: err.Error()}
	case errors.As(err, &ve):
		msgs := make([]string, len(ve.Problems))
		for i, p := range ve.Problems {
			msgs[i] = p.Field + ": " + p.Message
		}
		return errBadRequest(strings.Join(msgs, "; "))
	case errors.As(err, &tnf):
		v := tnf.Version
		if v == "" {
			v = "latest"
		}
		return errNotFound("Task template not found: " + tnf.Namespace + "/" + tnf.Name + "/" + v)
	case errors.Is(err, orchestration.ErrDuplicateTask):
		return errConflict("A task with this identity already exists")
	case errors.Is(err, orchestration.ErrTaskNotFound):
		return errResourceNotFound
	case errors.Is(err, orchestration.ErrTaskTerminal):
		return errBadRequest("Cannot cancel a completed task")
	}
	return err
}

func (a *API) createTask(w http.ResponseWriter, r *http.Request) {
	req, err := orchestration.ReadTaskRequest(r.Body)
	if err != nil {
		a.fail(w, r, taskError(err))
		return
	}
	created, err := a.orch.CreateTask(r.Context(), req)
	if err != nil {
		a.fail(w, r, taskError(err))
		return
	}
	a.answerTask(w, r, created.TaskUUID)
}

// answerTask answers 200 with the task's TaskResponse.
func (a *API) answerTask(w http.ResponseWriter, r *http.Request, id uuid.UUID) {
	v, err := a.orch.Task(r.Context(), id)
	if err != nil {
		a.fail(w, r, taskError(err))
		return
	}
	writeJSON(w, http.StatusOK, taskResponse(v))
}

func (a *API) getTask(w http.ResponseWriter, r *http.Request) {
	id, ae := taskUUID(r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	a.answerTask(w, r, id)
}

func (a *API) cancelTask(w http.ResponseWriter, r *http.Request) {
	id, ae := taskUUID(r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	if _, err := a.orch.Cancel(r.Context(), id); err != nil {
		a.fail(w, r, taskError(err))
		return
	}
	a.answerTask(w, r, id)
}

func (a *API) getTaskSummary(w http.ResponseWriter, r *http.Request) {
	id, ae := taskUUID(r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	s, err := a.orch.TaskSummary(r.Context(), id)
	if err != nil {
		a.fail(w, r, taskError(err))
		return
	}
	writeJSON(w, http.StatusOK, summaryResponse(s))
}

// listQuery reads tasker-core's TaskListQuery: page and per_page as unsigned 32-bit integers,
// the string filters as given (present but empty filters too).
func listQuery(r *http.Request) (orchestration.TaskFilter, *apiError) {
	q := r.URL.Query()
	var f orchestration.TaskFilter
	for _, p := range []struct {
		name string
		dst  *int
	}{{"page", &f.Page}, {"per_page", &f.PerPage}} {
		if !q.Has(p.name) {
			continue
		}
		n, err := strconv.ParseUint(q.Get(p.name), 10, 32)
		if err != nil {
			return f, errBadRequest("Failed to deserialize query string: " + p.name + ": invalid value " + strconv.Quote(q.Get(p.name)) + ", expected u32")
		}
		*p.dst = int(n)
		if n == 0 {
			*p.dst = -1 // explicit 0: refused below, as tasker-core's TaskService does
		}
	}
	if f.PerPage < 0 || f.PerPage > orchestration.MaxPerPage {
		return f, errBadRequest("per_page must be between 1 and 100")
	}
	if f.Page < 0 {
		return f, errBadRequest("page must be >= 1")
	}
	for _, p := range []struct {
		name string
		dst  **string
	}{{"namespace", &f.Namespace}, {"status", &f.Status}, {"initiator", &f.Initiator}, {"source_system", &f.SourceSystem}} {
		if q.Has(p.name) {
			v := q.Get(p.name)
			*p.dst = &v
		}
	}
	return f, nil
}

func (a *API) listTasks(w http.ResponseWriter, r *http.Request) {
	f, ae := listQuery(r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	page, err := a.orch.ListTasks(r.Context(), f)
	if errors.Is(err, orchestration.ErrInvalidFilter) {
		msg := strings.TrimPrefix(err.Error(), orchestration.ErrInvalidFilter.Error()+": ")
		writeError(w, errBadRequest(msg))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := TaskListResponse{Tasks: make([]TaskResponse, 0, len(page.Tasks))}
	for i := range page.Tasks {
		out.Tasks = append(out.Tasks, taskResponse(&page.Tasks[i]))
	}
	pages := (page.Total + int64(page.PerPage) - 1) / int64(page.PerPage)
	out.Pagination = PaginationInfo{
		Page: uint32(page.Page), PerPage: uint32(page.PerPage), TotalCount: uint64(page.Total),
		TotalPages: uint32(pages), HasNext: int64(page.Page) < pages, HasPrevious: page.Page > 1,
	}
	writeJSON(w, http.StatusOK, out)
}
