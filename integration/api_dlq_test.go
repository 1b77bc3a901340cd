package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/web"
)

// Golden field tables: crates/tasker-shared/src/models/orchestration/dlq.rs and
// crates/tasker-orchestration/src/web/handlers/dlq.rs. DlqReason and DlqResolutionStatus have no
// serde rename: their JSON is the variant name ("StalenessTimeout", "Pending"); NaiveDateTime is
// "2025-01-01T12:00:00[.ffffff]" without a zone.
var (
	dlqEntryFields = []apiField{
		{name: "dlq_entry_uuid", typ: "string", source: "dlq.rs:DlqEntry.dlq_entry_uuid Uuid"},
		{name: "task_uuid", typ: "string", source: "dlq.rs:DlqEntry.task_uuid Uuid"},
		{name: "original_state", typ: "string", source: "dlq.rs:DlqEntry.original_state String"},
		{name: "dlq_reason", typ: "string", source: "dlq.rs:DlqEntry.dlq_reason DlqReason"},
		{name: "dlq_timestamp", typ: "string", source: "dlq.rs:DlqEntry.dlq_timestamp NaiveDateTime"},
		{name: "resolution_status", typ: "string", source: "dlq.rs:DlqEntry.resolution_status DlqResolutionStatus"},
		{name: "resolution_timestamp", typ: "string|null", source: "dlq.rs:DlqEntry.resolution_timestamp Option<NaiveDateTime>"},
		{name: "resolution_notes", typ: "string|null", source: "dlq.rs:DlqEntry.resolution_notes Option<String>"},
		{name: "resolved_by", typ: "string|null", source: "dlq.rs:DlqEntry.resolved_by Option<String>"},
		{name: "task_snapshot", typ: "any", source: "dlq.rs:DlqEntry.task_snapshot serde_json::Value"},
		{name: "metadata", typ: "any", source: "dlq.rs:DlqEntry.metadata Option<serde_json::Value>"},
		{name: "created_at", typ: "string", source: "dlq.rs:DlqEntry.created_at NaiveDateTime"},
		{name: "updated_at", typ: "string", source: "dlq.rs:DlqEntry.updated_at NaiveDateTime"},
	}
	dlqStatsFields = []apiField{
		{name: "dlq_reason", typ: "string", source: "dlq.rs:DlqStats.dlq_reason DlqReason"},
		{name: "total_entries", typ: "integer", source: "dlq.rs:DlqStats.total_entries i64"},
		{name: "pending", typ: "integer", source: "dlq.rs:DlqStats.pending i64"},
		{name: "manually_resolved", typ: "integer", source: "dlq.rs:DlqStats.manually_resolved i64"},
		{name: "permanent_failures", typ: "integer", source: "dlq.rs:DlqStats.permanent_failures i64"},
		{name: "cancelled", typ: "integer", source: "dlq.rs:DlqStats.cancelled i64"},
		{name: "oldest_entry", typ: "string|null", source: "dlq.rs:DlqStats.oldest_entry Option<NaiveDateTime>"},
		{name: "newest_entry", typ: "string|null", source: "dlq.rs:DlqStats.newest_entry Option<NaiveDateTime>"},
		{name: "avg_resolution_time_minutes", typ: "number|null", source: "dlq.rs:DlqStats.avg_resolution_time_minutes Option<f64>"},
	}
	dlqQueueFields = []apiField{
		{name: "dlq_entry_uuid", typ: "string", source: "dlq.rs:DlqInvestigationQueueEntry.dlq_entry_uuid Uuid"},
		{name: "task_uuid", typ: "string", source: "dlq.rs:DlqInvestigationQueueEntry.task_uuid Uuid"},
		{name: "original_state", typ: "string", source: "dlq.rs:DlqInvestigationQueueEntry.original_state String"},
		{name: "dlq_reason", typ: "string", source: "dlq.rs:DlqInvestigationQueueEntry.dlq_reason DlqReason"},
		{name: "dlq_timestamp", typ: "string", source: "dlq.rs:DlqInvestigationQueueEntry.dlq_timestamp NaiveDateTime"},
		{name: "minutes_in_dlq", typ: "number", source: "dlq.rs:DlqInvestigationQueueEntry.minutes_in_dlq f64"},
		{name: "namespace_name", typ: "string|null", source: "dlq.rs:DlqInvestigationQueueEntry.namespace_name Option<String>"},
		{name: "task_name", typ: "string|null", source: "dlq.rs:DlqInvestigationQueueEntry.task_name Option<String>"},
		{name: "current_state", typ: "string|null", source: "dlq.rs:DlqInvestigationQueueEntry.current_state Option<String>"},
		{name: "time_in_state_minutes", typ: "integer|null", source: "dlq.rs:DlqInvestigationQueueEntry.time_in_state_minutes Option<i32>"},
		{name: "priority_score", typ: "number", source: "dlq.rs:DlqInvestigationQueueEntry.priority_score f64"},
	}
	dlqStalenessFields = []apiField{
		{name: "task_uuid", typ: "string", source: "dlq.rs:StalenessMonitoring.task_uuid Uuid"},
		{name: "namespace_name", typ: "string|null", source: "dlq.rs:StalenessMonitoring.namespace_name Option<String>"},
		{name: "task_name", typ: "string|null", source: "dlq.rs:StalenessMonitoring.task_name Option<String>"},
		{name: "current_state", typ: "string", source: "dlq.rs:StalenessMonitoring.current_state String"},
		{name: "time_in_state_minutes", typ: "integer", source: "dlq.rs:StalenessMonitoring.time_in_state_minutes i32"},
		{name: "task_age_minutes", typ: "integer", source: "dlq.rs:StalenessMonitoring.task_age_minutes i32"},
		{name: "staleness_threshold_minutes", typ: "integer", source: "dlq.rs:StalenessMonitoring.staleness_threshold_minutes i32"},
		{name: "health_status", typ: "string", source: "dlq.rs:StalenessMonitoring.health_status StalenessHealthStatus (lowercase)"},
		{name: "priority", typ: "integer", source: "dlq.rs:StalenessMonitoring.priority i32"},
	}
	dlqUpdateResponseFields = []apiField{
		{name: "success", typ: "boolean", source: "handlers/dlq.rs:UpdateInvestigationResponse.success bool"},
		{name: "message", typ: "string", source: "handlers/dlq.rs:UpdateInvestigationResponse.message String"},
		{name: "dlq_entry_uuid", typ: "string", source: "handlers/dlq.rs:UpdateInvestigationResponse.dlq_entry_uuid Uuid"},
	}
	naiveTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?$`)
)

// dlqList requires status 200 and returns the body as an array.
func dlqList(t *testing.T, status int, b []byte) []any {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", status, b)
	}
	return apiDecode[[]any](t, b)
}

// dlqMakeStale is SQL that backdates the task's current transition by two hours.
func dlqMakeStale(task uuid.UUID) string {
	return "UPDATE tasker.task_transitions SET created_at = created_at - interval '2 hours' WHERE most_recent AND task_uuid = '" + task.String() + "'"
}

// TestAPIDLQFlow: a task goes stale → the recovery sweep's staleness pass opens a DLQ entry and
// moves the task to error → an operator reads it, records the investigation, resolves it.
func TestAPIDLQFlow(t *testing.T) {
	_, pool := testdb.New(t)
	ctx := context.Background()
	orchRegister(t, pool, fnYAML)
	o := orchNew(t, pool, nil)
	ct := orchCreate(t, o, orchRequest("fnq", "fn_task", `{"n": 1}`))
	fresh := orchCreate(t, o, orchRequest("fnq", "fn_task", `{"n": 2}`))
	srv := apiServer(t, pool, o)
	task := ct.TaskUUID.String()

	// Nothing in the DLQ yet.
	if got := dlqGetList(t, srv, "/v1/dlq"); len(got) != 0 {
		t.Fatalf("GET /v1/dlq = %v, want []", got)
	}
	st, b := apiDo(t, srv, "GET", "/v1/dlq/task/"+task, nil)
	apiWantError(t, "GET unknown DLQ task", st, b, http.StatusNotFound, "NOT_FOUND", "DLQ entry not found for task "+task)

	// The task rests in steps_in_process for two hours (threshold 30 minutes).
	mustExec(t, pool, dlqMakeStale(ct.TaskUUID))
	stale := dlqGetList(t, srv, "/v1/dlq/staleness")
	if len(stale) != 2 {
		t.Fatalf("staleness = %v, want both tasks", stale)
	}
	first := stale[0].(map[string]any)
	apiCheckFields(t, "StalenessMonitoring", first, dlqStalenessFields)
	if first["task_uuid"] != task || first["health_status"] != "stale" || first["current_state"] != "steps_in_process" ||
		first["staleness_threshold_minutes"] != json.Number("30") || first["time_in_state_minutes"] != json.Number("120") ||
		first["namespace_name"] != "fnq" || first["task_name"] != "fn_task" {
		t.Errorf("stale task = %v", first)
	}
	if second := stale[1].(map[string]any); second["task_uuid"] != fresh.TaskUUID.String() || second["health_status"] != "healthy" {
		t.Errorf("fresh task = %v", second)
	}
	if got := dlqGetList(t, srv, "/v1/dlq/staleness?limit=1"); len(got) != 1 {
		t.Errorf("staleness?limit=1 returned %d rows", len(got))
	}

	// A dry run only reports.
	dry, err := o.DetectStaleTasks(ctx, orchestration.StalenessConfig{DryRun: true})
	if err != nil || len(dry) != 1 || dry[0].TaskUUID != ct.TaskUUID || dry[0].Action != orchestration.StaleWouldTransition {
		t.Fatalf("dry run = %+v, %v", dry, err)
	}
	if got := dlqGetList(t, srv, "/v1/dlq"); len(got) != 0 {
		t.Fatalf("dry run created entries: %v", got)
	}

	// The recovery sweep moves it.
	if _, err := o.RecoverySweep(ctx); err != nil {
		t.Fatal(err)
	}
	if s := orchScalar[string](t, pool, `SELECT to_state FROM tasker.task_transitions WHERE most_recent AND task_uuid = $1`, ct.TaskUUID); s != string(state.TaskError) {
		t.Fatalf("stale task state = %s, want error", s)
	}
	if s := orchScalar[string](t, pool, `SELECT to_state FROM tasker.task_transitions WHERE most_recent AND task_uuid = $1`, fresh.TaskUUID); s != "steps_in_process" {
		t.Fatalf("fresh task state = %s", s)
	}

	entries := dlqGetList(t, srv, "/v1/dlq")
	if len(entries) != 1 {
		t.Fatalf("GET /v1/dlq = %v", entries)
	}
	e := entries[0].(map[string]any)
	apiCheckFields(t, "DlqEntry (list)", e, dlqEntryFields)
	if e["task_uuid"] != task || e["dlq_reason"] != "StalenessTimeout" || e["resolution_status"] != "Pending" ||
		e["original_state"] != "steps_in_process" || e["resolution_timestamp"] != nil || e["resolution_notes"] != nil {
		t.Errorf("entry = %v", e)
	}
	for _, k := range []string{"dlq_timestamp", "created_at", "updated_at"} {
		if !naiveTimeRE.MatchString(e[k].(string)) {
			t.Errorf("%s = %q is not a NaiveDateTime", k, e[k])
		}
	}
	snap := e["task_snapshot"].(map[string]any)
	if snap["task_uuid"] != task || snap["namespace"] != "fnq" || snap["task_name"] != "fn_task" || snap["current_state"] != "steps_in_process" {
		t.Errorf("task_snapshot = %v", snap)
	}
	if md := e["metadata"].(map[string]any); md["detection_method"] != "automatic_staleness" || md["threshold_minutes"] != json.Number("30") {
		t.Errorf("metadata = %v", md)
	}
	entryID := e["dlq_entry_uuid"].(string)

	// The same entry by task, filtered lists (tasker-core's JSON spelling and its client's).
	got := dlqGetObj(t, srv, "/v1/dlq/task/"+task)
	apiCheckFields(t, "DlqEntry (by task)", got, dlqEntryFields)
	if got["dlq_entry_uuid"] != entryID {
		t.Errorf("by task = %v", got)
	}
	for q, n := range map[string]int{"pending": 1, "Pending": 1, "ManuallyResolved": 0, "cancelled": 0} {
		if got := dlqGetList(t, srv, "/v1/dlq?resolution_status="+q+"&limit=20&offset=0"); len(got) != n {
			t.Errorf("resolution_status=%s: %d entries, want %d", q, len(got), n)
		}
	}
	if got := dlqGetList(t, srv, "/v1/dlq?offset=1"); len(got) != 0 {
		t.Errorf("offset=1: %v", got)
	}

	stats := dlqGetList(t, srv, "/v1/dlq/stats")
	if len(stats) != 1 {
		t.Fatalf("stats = %v", stats)
	}
	s0 := stats[0].(map[string]any)
	apiCheckFields(t, "DlqStats", s0, dlqStatsFields)
	if s0["dlq_reason"] != "StalenessTimeout" || s0["total_entries"] != json.Number("1") || s0["pending"] != json.Number("1") ||
		s0["manually_resolved"] != json.Number("0") {
		t.Errorf("stats = %v", s0)
	}
	queue := dlqGetList(t, srv, "/v1/dlq/investigation-queue")
	if len(queue) != 1 {
		t.Fatalf("investigation queue = %v", queue)
	}
	q0 := queue[0].(map[string]any)
	apiCheckFields(t, "DlqInvestigationQueueEntry", q0, dlqQueueFields)
	if q0["dlq_entry_uuid"] != entryID || q0["namespace_name"] != "fnq" || q0["time_in_state_minutes"] != json.Number("120") {
		t.Errorf("queue entry = %v", q0)
	}
	if p, _ := q0["priority_score"].(json.Number).Float64(); p < 100 || p > 101 {
		t.Errorf("priority_score = %v, want staleness weight 100 + minutes in DLQ", p)
	}

	// A second sweep leaves the errored task alone.
	if _, err := o.RecoverySweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := orchScalar[int64](t, pool, `SELECT count(*) FROM tasker.tasks_dlq`); n != 1 {
		t.Fatalf("%d DLQ entries after a second sweep", n)
	}

	// Investigate: notes and who, status unchanged.
	st, b = apiDo(t, srv, "PATCH", "/v1/dlq/entry/"+entryID, map[string]any{
		"resolution_notes": "step alpha lost its worker", "resolved_by": "op@example.com", "metadata": map[string]any{"ticket": 7}})
	resp := apiOK(t, st, b)
	apiCheckFields(t, "UpdateInvestigationResponse", resp, dlqUpdateResponseFields)
	if resp["success"] != true || resp["message"] != "Investigation status updated successfully" || resp["dlq_entry_uuid"] != entryID {
		t.Errorf("PATCH response = %v", resp)
	}
	got = dlqGetObj(t, srv, "/v1/dlq/task/"+task)
	if got["resolution_status"] != "Pending" || got["resolution_notes"] != "step alpha lost its worker" ||
		got["resolved_by"] != "op@example.com" || got["resolution_timestamp"] != nil ||
		got["metadata"].(map[string]any)["ticket"] != json.Number("7") {
		t.Errorf("after investigation = %v", got)
	}

	// Resolve (tasker-core's JSON spelling); notes are kept.
	st, b = apiDo(t, srv, "PATCH", "/v1/dlq/entry/"+entryID, map[string]any{"resolution_status": "ManuallyResolved", "metadata": nil})
	apiOK(t, st, b)
	got = dlqGetObj(t, srv, "/v1/dlq/task/"+task)
	if got["resolution_status"] != "ManuallyResolved" || got["resolution_notes"] != "step alpha lost its worker" ||
		got["resolution_timestamp"] == nil || !naiveTimeRE.MatchString(got["resolution_timestamp"].(string)) ||
		got["metadata"].(map[string]any)["ticket"] != json.Number("7") {
		t.Errorf("after resolution = %v", got)
	}
	// Same status again is fine; reopening or changing a resolved entry is a conflict.
	st, b = apiDo(t, srv, "PATCH", "/v1/dlq/entry/"+entryID, map[string]any{"resolution_status": "manually_resolved"})
	apiOK(t, st, b)
	for _, s := range []string{"Pending", "cancelled"} {
		st, b = apiDo(t, srv, "PATCH", "/v1/dlq/entry/"+entryID, map[string]any{"resolution_status": s})
		apiWantError(t, "PATCH resolved → "+s, st, b, http.StatusConflict, "CONFLICT", "")
	}

	stats = dlqGetList(t, srv, "/v1/dlq/stats")
	s0 = stats[0].(map[string]any)
	if s0["pending"] != json.Number("0") || s0["manually_resolved"] != json.Number("1") || s0["avg_resolution_time_minutes"] == nil {
		t.Errorf("stats after resolution = %v", s0)
	}
	if q := dlqGetList(t, srv, "/v1/dlq/investigation-queue"); len(q) != 0 {
		t.Errorf("investigation queue after resolution = %v", q)
	}
}

// dlqGetList GETs path and requires 200 with an array body.
func dlqGetList(t *testing.T, srv *httptest.Server, path string) []any {
	t.Helper()
	st, b := apiDoS(t, srv, "GET", path)
	return dlqList(t, st, b)
}

// dlqGetObj GETs path and requires 200 with an object body.
func dlqGetObj(t *testing.T, srv *httptest.Server, path string) map[string]any {
	t.Helper()
	st, b := apiDoS(t, srv, "GET", path)
	return apiOK(t, st, b)
}

// apiDoS is apiDo without a body, returning (status, body) for chaining.
func apiDoS(t *testing.T, srv *httptest.Server, method, path string) (int, []byte) {
	t.Helper()
	return apiDo(t, srv, method, path, nil)
}

func TestAPIDLQErrors(t *testing.T) {
	_, pool := testdb.New(t)
	o := orchNew(t, pool, nil)
	srv := apiServer(t, pool, o)
	missing := uuid.New().String()
	cases := []struct {
		what, method, path string
		body               any
		ctype              string
		status             int
		code               string
	}{
		{"bad task uuid", "GET", "/v1/dlq/task/not-a-uuid", nil, "", 400, "INVALID_UUID"},
		{"bad entry uuid", "PATCH", "/v1/dlq/entry/xyz", map[string]any{}, "", 400, "INVALID_UUID"},
		{"unknown entry", "PATCH", "/v1/dlq/entry/" + missing, map[string]any{"resolution_notes": "x"}, "", 404, "NOT_FOUND"},
		{"malformed JSON", "PATCH", "/v1/dlq/entry/" + missing, `{"resolution_notes":`, "", 400, "JSON_ERROR"},
		{"wrong field type", "PATCH", "/v1/dlq/entry/" + missing, `{"resolution_notes": 5}`, "", 422, "UNPROCESSABLE_ENTITY"},
		{"unknown status", "PATCH", "/v1/dlq/entry/" + missing, map[string]any{"resolution_status": "Fixed"}, "", 422, "UNPROCESSABLE_ENTITY"},
		{"not JSON", "PATCH", "/v1/dlq/entry/" + missing, `{}`, "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"bad status filter", "GET", "/v1/dlq?resolution_status=open", nil, "", 400, "BAD_REQUEST"},
		{"bad limit", "GET", "/v1/dlq?limit=ten", nil, "", 400, "BAD_REQUEST"},
		{"negative offset", "GET", "/v1/dlq?offset=-1", nil, "", 400, "BAD_REQUEST"},
		{"bad queue limit", "GET", "/v1/dlq/investigation-queue?limit=x", nil, "", 400, "BAD_REQUEST"},
		{"bad staleness limit", "GET", "/v1/dlq/staleness?limit=-5", nil, "", 400, "BAD_REQUEST"},
	}
	for _, c := range cases {
		var rd *strings.Reader
		switch b := c.body.(type) {
		case nil:
			rd = strings.NewReader("")
		case string:
			rd = strings.NewReader(b)
		default:
			data, _ := json.Marshal(b)
			rd = strings.NewReader(string(data))
		}
		req, _ := http.NewRequest(c.method, srv.URL+c.path, rd)
		ct := c.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		apiWantError(t, c.what, resp.StatusCode, body, c.status, c.code, "")
	}
}

// TestAPIDLQAndAnalyticsPermissions checks each route's resource/action through the real guard:
// an API key with dlq:read reads entries but may not update them or read stats or analytics.
func TestAPIDLQAndAnalyticsPermissions(t *testing.T) {
	_, pool := testdb.New(t)
	o := orchNew(t, pool, nil)
	cfg := api.AuthConfig{Enabled: true, APIKeyHeader: "X-API-Key", APIKeysEnabled: true,
		APIKeys: []api.APIKey{
			{Key: "reader", Permissions: []string{"dlq:read"}, Description: "reader"},
			{Key: "stats", Permissions: []string{"dlq:stats", "dlq:update", "system:analytics_read"}, Description: "stats"},
		}}
	a, err := api.New(o, pool, api.Options{Logger: orchLogger(), Auth: cfg})
	if err != nil {
		t.Fatal(err)
	}
	s := web.New(web.Config{Routes: a.Mount, Logger: orchLogger()})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	entry := "/v1/dlq/entry/" + uuid.New().String()
	routes := []struct {
		method, path  string
		reader, stats int
	}{
		{"GET", "/v1/dlq", 200, 403},
		{"GET", "/v1/dlq/task/" + uuid.New().String(), 404, 403},
		{"PATCH", entry, 403, 404},
		{"GET", "/v1/dlq/stats", 403, 200},
		{"GET", "/v1/dlq/investigation-queue", 200, 403},
		{"GET", "/v1/dlq/staleness", 200, 403},
		{"GET", "/v1/analytics/performance", 403, 200},
		{"GET", "/v1/analytics/bottlenecks", 403, 200},
	}
	for _, r := range routes {
		for key, want := range map[string]int{"reader": r.reader, "stats": r.stats, "": 401} {
			req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(`{"resolution_notes":"x"}`))
			req.Header.Set("Content-Type", "application/json")
			if key != "" {
				req.Header.Set("X-API-Key", key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s %s with key %q: %d, want %d", r.method, r.path, key, resp.StatusCode, want)
			}
		}
	}
}
