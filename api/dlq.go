package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
)

// The DLQ is an investigation log (tasker.tasks_dlq): the staleness detection opens an entry
// when it moves a stale task to error; operators fix the task's steps through the step API and
// record the outcome here. Nothing is requeued from it.

func (a *API) mountDLQ(mux *http.ServeMux) {
	bad := Response{http.StatusBadRequest, "Invalid query or body", nil}
	a.handle(mux, Route{Method: "GET", Path: "/v1/dlq", Resource: "dlq", Action: "list", Tag: "dlq",
		Summary:   "List DLQ entries, newest first",
		Query:     []Param{{Name: "resolution_status", Type: "string"}, {Name: "limit", Type: "integer"}, {Name: "offset", Type: "integer"}},
		Responses: []Response{{http.StatusOK, "DLQ entries", []dlqEntry{}}, bad}}, a.listDLQ)
	a.handle(mux, Route{Method: "GET", Path: "/v1/dlq/task/{task_uuid}", Resource: "dlq", Action: "read", Tag: "dlq",
		Summary:   "A task's most recent DLQ entry with its snapshot",
		Responses: []Response{{http.StatusOK, "DLQ entry", dlqEntry{}}, bad, {http.StatusNotFound, "No entry", nil}}}, a.getDLQEntry)
	a.handle(mux, Route{Method: "PATCH", Path: "/v1/dlq/entry/{dlq_entry_uuid}", Resource: "dlq", Action: "update", Tag: "dlq",
		Summary: "Record an investigation (status, notes, resolved_by, metadata)", Body: dlqUpdate{},
		Responses: []Response{{http.StatusOK, "Updated", dlqUpdated{}}, bad, {http.StatusNotFound, "No entry", nil},
			{http.StatusConflict, "A resolved entry's status cannot change", nil}}}, a.updateDLQEntry)
	a.handle(mux, Route{Method: "GET", Path: "/v1/dlq/stats", Resource: "dlq", Action: "stats", Tag: "dlq",
		Summary: "DLQ statistics by reason", Responses: []Response{{http.StatusOK, "Statistics", []dlqStats{}}}}, a.dlqStats)
	a.handle(mux, Route{Method: "GET", Path: "/v1/dlq/investigation-queue", Resource: "dlq", Action: "read", Tag: "dlq",
		Summary: "Pending entries by priority", Query: []Param{{Name: "limit", Type: "integer"}},
		Responses: []Response{{http.StatusOK, "Pending entries", []dlqQueueEntry{}}, bad}}, a.dlqInvestigationQueue)
	a.handle(mux, Route{Method: "GET", Path: "/v1/dlq/staleness", Resource: "dlq", Action: "read", Tag: "dlq",
		Summary: "Staleness of waiting tasks", Query: []Param{{Name: "limit", Type: "integer"}},
		Responses: []Response{{http.StatusOK, "Tasks and their staleness", []stalenessEntry{}}, bad}}, a.dlqStaleness)
}

// dlqReasons and dlqStatuses map the database enum values to tasker-core's JSON spelling
// (serde's default for its DlqReason and DlqResolutionStatus: the variant name).
var (
	dlqReasons = map[string]string{
		"staleness_timeout":         "StalenessTimeout",
		"max_retries_exceeded":      "MaxRetriesExceeded",
		"dependency_cycle_detected": "DependencyCycleDetected",
		"worker_unavailable":        "WorkerUnavailable",
		"manual_dlq":                "ManualDlq",
	}
	dlqStatuses = map[string]string{
		"pending":            "Pending",
		"manually_resolved":  "ManuallyResolved",
		"permanently_failed": "PermanentlyFailed",
		"cancelled":          "Cancelled",
	}
)

// dlqEnum is a database enum value that marshals in tasker-core's JSON spelling.
type dlqEnum struct {
	db     string
	byName map[string]string
}

func (e dlqEnum) MarshalJSON() ([]byte, error) {
	if v, ok := e.byName[e.db]; ok {
		return json.Marshal(v)
	}
	return json.Marshal(e.db)
}

// parseDLQStatus accepts a resolution status as tasker-core's JSON spells it ("ManuallyResolved")
// or as its database and its client's query strings do ("manually_resolved"), and returns the
// database value.
func parseDLQStatus(s string) (string, bool) {
	for db, name := range dlqStatuses {
		if s == db || s == name {
			return db, true
		}
	}
	return "", false
}

// dlqEntry is tasker-core's DlqEntry.
type dlqEntry struct {
	DLQEntryUUID        uuid.UUID           `json:"dlq_entry_uuid"`
	TaskUUID            uuid.UUID           `json:"task_uuid"`
	OriginalState       string              `json:"original_state"`
	DLQReason           dlqEnum             `json:"dlq_reason"`
	DLQTimestamp        protocol.NaiveTime  `json:"dlq_timestamp"`
	ResolutionStatus    dlqEnum             `json:"resolution_status"`
	ResolutionTimestamp *protocol.NaiveTime `json:"resolution_timestamp"`
	ResolutionNotes     *string             `json:"resolution_notes"`
	ResolvedBy          *string             `json:"resolved_by"`
	TaskSnapshot        json.RawMessage     `json:"task_snapshot"`
	Metadata            json.RawMessage     `json:"metadata"`
	CreatedAt           protocol.NaiveTime  `json:"created_at"`
	UpdatedAt           protocol.NaiveTime  `json:"updated_at"`
}

const dlqEntryColumns = `dlq_entry_uuid, task_uuid, original_state, dlq_reason::text, dlq_timestamp,
	resolution_status::text, resolution_timestamp, resolution_notes, resolved_by, task_snapshot,
	metadata, created_at, updated_at`

func scanDLQEntry(row pgx.CollectableRow) (dlqEntry, error) {
	var e dlqEntry
	var reason, status string
	var dlqAt, createdAt, updatedAt time.Time
	var resolvedAt *time.Time
	var snapshot, metadata []byte
	err := row.Scan(&e.DLQEntryUUID, &e.TaskUUID, &e.OriginalState, &reason, &dlqAt, &status, &resolvedAt,
		&e.ResolutionNotes, &e.ResolvedBy, &snapshot, &metadata, &createdAt, &updatedAt)
	if err != nil {
		return e, err
	}
	e.DLQReason = dlqEnum{reason, dlqReasons}
	e.ResolutionStatus = dlqEnum{status, dlqStatuses}
	e.DLQTimestamp, e.CreatedAt, e.UpdatedAt = protocol.NewNaiveTime(dlqAt), protocol.NewNaiveTime(createdAt), protocol.NewNaiveTime(updatedAt)
	e.ResolutionTimestamp = naivePtr(resolvedAt)
	e.TaskSnapshot = json.RawMessage(snapshot)
	e.Metadata = json.RawMessage("null")
	if metadata != nil {
		e.Metadata = json.RawMessage(metadata)
	}
	return e, nil
}

// paramInt reads an optional integer query parameter; it must be at least min.
func paramInt(r *http.Request, name string, def, minimum int64) (int64, *apiError) {
	raw, ok := r.URL.Query()[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(raw[len(raw)-1], 10, 64)
	if err != nil || n < minimum {
		return 0, &apiError{http.StatusBadRequest, "BAD_REQUEST",
			fmt.Sprintf("Invalid query parameter %s=%q: want an integer of at least %d", name, raw[len(raw)-1], minimum)}
	}
	return n, nil
}

// paramUUID reads a UUID path value (tasker-core answers a malformed one with 400).
func paramUUID(r *http.Request, name string) (uuid.UUID, *apiError) {
	id, err := uuid.Parse(r.PathValue(name))
	if err != nil {
		return uuid.Nil, &apiError{http.StatusBadRequest, "INVALID_UUID", fmt.Sprintf("Invalid UUID in path: %q", r.PathValue(name))}
	}
	return id, nil
}

// dbFailure logs err and answers 500 DATABASE_ERROR with what failed (not the database's text).
func (a *API) dbFailure(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.log.Error("api: "+what, "path", r.URL.Path, "error", err)
	writeError(w, &apiError{http.StatusInternalServerError, "DATABASE_ERROR", what})
}

// listDLQ: GET /v1/dlq?resolution_status=&limit=50&offset=0, newest entry first.
func (a *API) listDLQ(w http.ResponseWriter, r *http.Request) {
	var status *string
	if v := r.URL.Query().Get("resolution_status"); v != "" {
		db, ok := parseDLQStatus(v)
		if !ok {
			writeError(w, &apiError{http.StatusBadRequest, "BAD_REQUEST",
				fmt.Sprintf("Invalid resolution_status %q: want Pending, ManuallyResolved, PermanentlyFailed or Cancelled", v)})
			return
		}
		status = &db
	}
	limit, aerr := paramInt(r, "limit", 50, 0)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	offset, aerr := paramInt(r, "offset", 0, 0)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rows, err := a.pool.Query(r.Context(), `SELECT `+dlqEntryColumns+` FROM tasker.tasks_dlq
		WHERE $1::text IS NULL OR resolution_status::text = $1
		ORDER BY dlq_timestamp DESC, dlq_entry_uuid DESC LIMIT $2 OFFSET $3`, status, limit, offset)
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch DLQ entries", err)
		return
	}
	entries, err := pgx.CollectRows(rows, scanDLQEntry)
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch DLQ entries", err)
		return
	}
	writeJSON(w, http.StatusOK, emptyIfNil(entries))
}

// getDLQEntry: GET /v1/dlq/task/{task_uuid}, the task's most recent entry.
func (a *API) getDLQEntry(w http.ResponseWriter, r *http.Request) {
	id, aerr := paramUUID(r, "task_uuid")
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rows, err := a.pool.Query(r.Context(), `SELECT `+dlqEntryColumns+` FROM tasker.tasks_dlq
		WHERE task_uuid = $1 ORDER BY created_at DESC, dlq_entry_uuid DESC LIMIT 1`, id)
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch DLQ entry", err)
		return
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanDLQEntry)
	if errors.Is(err, pgx.ErrNoRows) {
		writeError(w, &apiError{http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("DLQ entry not found for task %s", id)})
		return
	}
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch DLQ entry", err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// dlqUpdate is tasker-core's UpdateInvestigationRequest; absent fields are left unchanged.
type dlqUpdate struct {
	ResolutionStatus *string         `json:"resolution_status"`
	ResolutionNotes  *string         `json:"resolution_notes"`
	ResolvedBy       *string         `json:"resolved_by"`
	Metadata         json.RawMessage `json:"metadata"`
}

// errDLQResolved is returned when a resolved DLQ entry is given another resolution status.
var errDLQResolved = errors.New("resolved")

// updateDLQEntry: PATCH /v1/dlq/entry/{dlq_entry_uuid}. An investigation goes from pending to
// manually_resolved, permanently_failed or cancelled (tasker-core's documented lifecycle); a
// resolved entry keeps its status (409 CONFLICT for another one; tasker-core's code does not
// check, and reopening an entry while the task has a newer pending one fails there with a
// database error). Setting a status stamps resolution_timestamp; notes, resolved_by and
// metadata may change at any time.
func (a *API) updateDLQEntry(w http.ResponseWriter, r *http.Request) {
	id, aerr := paramUUID(r, "dlq_entry_uuid")
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var req dlqUpdate
	if aerr := readJSONBody(r, &req); aerr != nil {
		writeError(w, aerr)
		return
	}
	var status *string
	if req.ResolutionStatus != nil {
		db, ok := parseDLQStatus(*req.ResolutionStatus)
		if !ok {
			writeError(w, &apiError{http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY",
				fmt.Sprintf("resolution_status: unknown variant %q, expected one of Pending, ManuallyResolved, PermanentlyFailed, Cancelled", *req.ResolutionStatus)})
			return
		}
		status = &db
	}
	var metadata []byte
	if len(req.Metadata) > 0 && string(req.Metadata) != "null" {
		metadata = req.Metadata
	}
	found, err := a.applyDLQUpdate(r.Context(), id, status, req, metadata)
	switch {
	case errors.Is(err, errDLQResolved):
		writeError(w, &apiError{http.StatusConflict, "CONFLICT",
			fmt.Sprintf("DLQ entry %s is already resolved; its resolution_status cannot change to %s", id, dlqStatuses[*status])})
		return
	case err != nil:
		a.dbFailure(w, r, "Failed to update DLQ entry", err)
		return
	case !found:
		writeError(w, &apiError{http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("DLQ entry not found: %s", id)})
		return
	}
	writeJSON(w, http.StatusOK, dlqUpdated{Success: true, Message: "Investigation status updated successfully", DLQEntryUUID: id})
}

// dlqUpdated is the answer to an investigation update (tasker-core's handler builds it with json!).
type dlqUpdated struct {
	Success      bool      `json:"success"`
	Message      string    `json:"message"`
	DLQEntryUUID uuid.UUID `json:"dlq_entry_uuid"`
}

// applyDLQUpdate checks the status change against the entry's current status and updates it, in
// one transaction holding the entry's row lock.
func (a *API) applyDLQUpdate(ctx context.Context, id uuid.UUID, status *string, req dlqUpdate, metadata []byte) (bool, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	var current string
	err = tx.QueryRow(ctx, `SELECT resolution_status::text FROM tasker.tasks_dlq WHERE dlq_entry_uuid = $1 FOR UPDATE`, id).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if status != nil && current != "pending" && *status != current {
		return true, errDLQResolved
	}
	if _, err := tx.Exec(ctx, `UPDATE tasker.tasks_dlq
		SET resolution_status = COALESCE($2::tasker.dlq_resolution_status, resolution_status),
		    resolution_timestamp = CASE WHEN $2::text IS NOT NULL THEN timezone('UTC', now()) ELSE resolution_timestamp END,
		    resolution_notes = COALESCE($3, resolution_notes),
		    resolved_by = COALESCE($4, resolved_by),
		    metadata = COALESCE($5::jsonb, metadata),
		    updated_at = timezone('UTC', now())
		WHERE dlq_entry_uuid = $1`, id, status, req.ResolutionNotes, req.ResolvedBy, metadata); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// readJSONBody decodes a JSON request body the way axum's Json extractor judges it: 415
// without a JSON content type, 400 for malformed JSON, 422 for JSON of the wrong shape.
func readJSONBody(r *http.Request, v any) *apiError {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return &apiError{http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
			"Expected request with `Content-Type: application/json`"}
	}
	body := http.MaxBytesReader(nil, r.Body, 1<<20)
	err = json.NewDecoder(body).Decode(v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		return &apiError{http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY",
			fmt.Sprintf("Failed to deserialize the JSON body: %s: expected %s", typeErr.Field, typeErr.Type)}
	default:
		return &apiError{http.StatusBadRequest, "JSON_ERROR", "Invalid JSON format: " + err.Error()}
	}
}

// dlqStats is tasker-core's DlqStats (one row of v_dlq_dashboard).
type dlqStats struct {
	DLQReason                dlqEnum             `json:"dlq_reason"`
	TotalEntries             int64               `json:"total_entries"`
	Pending                  int64               `json:"pending"`
	ManuallyResolved         int64               `json:"manually_resolved"`
	PermanentFailures        int64               `json:"permanent_failures"`
	Cancelled                int64               `json:"cancelled"`
	OldestEntry              *protocol.NaiveTime `json:"oldest_entry"`
	NewestEntry              *protocol.NaiveTime `json:"newest_entry"`
	AvgResolutionTimeMinutes *float64            `json:"avg_resolution_time_minutes"`
}

// dlqStats: GET /v1/dlq/stats, one row per reason that has entries.
func (a *API) dlqStats(w http.ResponseWriter, r *http.Request) {
	rows, err := a.pool.Query(r.Context(), `SELECT dlq_reason::text, total_entries, pending, manually_resolved,
		permanent_failures, cancelled, oldest_entry, newest_entry, avg_resolution_time_minutes::float8
		FROM tasker.v_dlq_dashboard ORDER BY dlq_reason`)
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch DLQ statistics", err)
		return
	}
	stats, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dlqStats, error) {
		var s dlqStats
		var reason string
		var oldest, newest *time.Time
		err := row.Scan(&reason, &s.TotalEntries, &s.Pending, &s.ManuallyResolved, &s.PermanentFailures,
			&s.Cancelled, &oldest, &newest, &s.AvgResolutionTimeMinutes)
		s.DLQReason = dlqEnum{reason, dlqReasons}
		s.OldestEntry, s.NewestEntry = naivePtr(oldest), naivePtr(newest)
		return s, err
	})
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch DLQ statistics", err)
		return
	}
	writeJSON(w, http.StatusOK, emptyIfNil(stats))
}

// dlqQueueEntry is tasker-core's DlqInvestigationQueueEntry (v_dlq_investigation_queue).
type dlqQueueEntry struct {
	DLQEntryUUID       uuid.UUID          `json:"dlq_entry_uuid"`
	TaskUUID           uuid.UUID          `json:"task_uuid"`
	OriginalState      string             `json:"original_state"`
	DLQReason          dlqEnum            `json:"dlq_reason"`
	DLQTimestamp       protocol.NaiveTime `json:"dlq_timestamp"`
	MinutesInDLQ       float64            `json:"minutes_in_dlq"`
	NamespaceName      *string            `json:"namespace_name"`
	TaskName           *string            `json:"task_name"`
	CurrentState       *string            `json:"current_state"`
	TimeInStateMinutes *int32             `json:"time_in_state_minutes"`
	PriorityScore      float64            `json:"priority_score"`
}

// dlqInvestigationQueue: GET /v1/dlq/investigation-queue?limit=100, pending entries, most
// urgent first (reason weight plus minutes waiting).
func (a *API) dlqInvestigationQueue(w http.ResponseWriter, r *http.Request) {
	limit, aerr := paramInt(r, "limit", 100, 0)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rows, err := a.pool.Query(r.Context(), `SELECT dlq_entry_uuid, task_uuid, original_state, dlq_reason::text,
		dlq_timestamp, minutes_in_dlq::float8, namespace_name, task_name, current_state,
		time_in_state_minutes, priority_score::float8
		FROM tasker.v_dlq_investigation_queue LIMIT $1`, limit)
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch investigation queue", err)
		return
	}
	queue, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dlqQueueEntry, error) {
		var e dlqQueueEntry
		var reason string
		var at time.Time
		err := row.Scan(&e.DLQEntryUUID, &e.TaskUUID, &e.OriginalState, &reason, &at, &e.MinutesInDLQ,
			&e.NamespaceName, &e.TaskName, &e.CurrentState, &e.TimeInStateMinutes, &e.PriorityScore)
		e.DLQReason = dlqEnum{reason, dlqReasons}
		e.DLQTimestamp = protocol.NewNaiveTime(at)
		return e, err
	})
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch investigation queue", err)
		return
	}
	writeJSON(w, http.StatusOK, emptyIfNil(queue))
}

// stalenessEntry is tasker-core's StalenessMonitoring (v_task_staleness_monitoring).
type stalenessEntry struct {
	TaskUUID                  uuid.UUID `json:"task_uuid"`
	NamespaceName             *string   `json:"namespace_name"`
	TaskName                  *string   `json:"task_name"`
	CurrentState              string    `json:"current_state"`
	TimeInStateMinutes        int32     `json:"time_in_state_minutes"`
	TaskAgeMinutes            int32     `json:"task_age_minutes"`
	StalenessThresholdMinutes int32     `json:"staleness_threshold_minutes"`
	HealthStatus              string    `json:"health_status"`
	Priority                  int32     `json:"priority"`
}

// dlqStaleness: GET /v1/dlq/staleness?limit=100, tasks in the watched waiting states with their
// threshold and health (healthy, warning from 80%, stale), stale first, then longest in state.
func (a *API) dlqStaleness(w http.ResponseWriter, r *http.Request) {
	limit, aerr := paramInt(r, "limit", 100, 0)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rows, err := a.pool.Query(r.Context(), `SELECT task_uuid, namespace_name, task_name, current_state,
		time_in_state_minutes::integer, task_age_minutes::integer, staleness_threshold_minutes::integer,
		health_status, priority::integer
		FROM tasker.v_task_staleness_monitoring
		ORDER BY CASE health_status WHEN 'stale' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END,
		         time_in_state_minutes DESC
		LIMIT $1`, limit)
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch staleness monitoring", err)
		return
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (stalenessEntry, error) {
		var e stalenessEntry
		err := row.Scan(&e.TaskUUID, &e.NamespaceName, &e.TaskName, &e.CurrentState, &e.TimeInStateMinutes,
			&e.TaskAgeMinutes, &e.StalenessThresholdMinutes, &e.HealthStatus, &e.Priority)
		return e, err
	})
	if err != nil {
		a.dbFailure(w, r, "Failed to fetch staleness monitoring", err)
		return
	}
	writeJSON(w, http.StatusOK, emptyIfNil(out))
}

// emptyIfNil makes an empty result marshal as [] rather than null.
func emptyIfNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
