package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/internal/cli"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
)

// cliRunEnv runs the CLI with DATABASE_URL and the extra environment variables.
func cliRunEnv(t *testing.T, dbURL string, extra map[string]string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		if k == "DATABASE_URL" {
			return dbURL
		}
		return extra[k]
	}}
	code := cli.Main(context.Background(), "tasker", args, env)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// cliBoth runs args directly against the database and remotely against srv, and requires the
// same exit code, standard output and (apart from the command path) error output.
func cliBoth(t *testing.T, dbURL, srvURL string, args ...string) cliResult {
	t.Helper()
	direct := cliRunEnv(t, dbURL, nil, args...)
	remote := cliRunEnv(t, "", map[string]string{"TASKER_API_URL": srvURL}, args...)
	if direct.code != remote.code || direct.stdout != remote.stdout || direct.stderr != remote.stderr {
		t.Fatalf("%q differs:\ndirect exit %d\n%s%s\nremote exit %d\n%s%s", args, direct.code, direct.stdout, direct.stderr,
			remote.code, remote.stdout, remote.stderr)
	}
	return direct
}

// cliBlockedTask creates an api_chain task whose first step failed permanently (task
// blocked_by_failures, s_a in error).
func cliBlockedTask(t *testing.T, pool *pgxpool.Pool, o *orchestration.Orchestrator, n int) *orchestration.CreatedTask {
	t.Helper()
	ct := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{"n": `+jsonInt(n)+`}`))
	orchWaitStep(t, pool, ct.Steps["s_a"], 10*time.Second, state.StepEnqueued)
	fail := protocol.Failure(ct.Steps["s_a"], "card declined", "PermanentError", "DECLINED", false, 5, nil)
	orchSimulateWorker(t, pool, ct.TaskUUID, ct.Steps["s_a"], ct.CorrelationID, fail, true)
	orchWaitStep(t, pool, ct.Steps["s_a"], 10*time.Second, state.StepError)
	orchWaitTask(t, pool, ct.TaskUUID, 10*time.Second, state.TaskBlockedByFailures)
	return ct
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func cliMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCLIRemoteMatchesDirect runs the task commands against the database and against a real
// orchestrator API and compares what they print and their exit codes.
func TestCLIRemoteMatchesDirect(t *testing.T) {
	dbURL, pool := testdb.New(t)
	orchRegister(t, pool, apiChainYAML)
	o := orchNew(t, pool, nil)
	orchRun(t, o)
	srv := apiServer(t, pool, o)
	blocked := cliBlockedTask(t, pool, o, 1)
	other := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{"n": 2}`))

	r := cliBoth(t, dbURL, srv.URL, "task", "list")
	if r.code != cli.ExitOK || !strings.Contains(r.stdout, blocked.TaskUUID.String()) || !strings.Contains(r.stdout, "blocked_by_failures") ||
		!strings.Contains(r.stdout, other.TaskUUID.String()) || !strings.HasPrefix(r.stdout, "TASK ") {
		t.Errorf("task list:\n%s%s", r.stdout, r.stderr)
	}
	r = cliBoth(t, dbURL, srv.URL, "task", "list", "--state", "blocked_by_failures", "-o", "json")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 1 || listed[0]["task_uuid"] != blocked.TaskUUID.String() {
		t.Errorf("task list -o json: %v\n%s", err, r.stdout)
	}
	if r = cliBoth(t, dbURL, srv.URL, "task", "list", "--limit", "1"); strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("task list --limit 1:\n%s", r.stdout)
	}

	// The status tree, error message and retry outlook included.
	r = cliBoth(t, dbURL, srv.URL, "task", "status", blocked.TaskUUID.String())
	for _, want := range []string{"blocked_by_failures", "s_a  error  attempts 1/1  failed, not retryable: card declined", "└─ s_b  pending"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("task status lacks %q:\n%s", want, r.stdout)
		}
	}
	// -o json remotely is the API's TaskResponse.
	rj := cliRunEnv(t, "", nil, "task", "status", "--url", srv.URL, "-o", "json", blocked.TaskUUID.String())
	_, body := apiDo(t, srv, "GET", "/v1/tasks/"+blocked.TaskUUID.String(), nil)
	if rj.code != cli.ExitOK || !orchJSONEqual(rj.stdout, string(body)) {
		t.Errorf("task status --url -o json = %d %s\nwant %s", rj.code, rj.stdout, body)
	}

	// Errors: unknown task 5, invalid state for an action 2, a cancelled task cannot be cancelled again.
	missing := uuid.New().String()
	if r = cliBoth(t, dbURL, srv.URL, "task", "status", missing); r.code != cli.ExitNotFound {
		t.Errorf("status of unknown task: exit %d %s", r.code, r.stderr)
	}
	if r = cliBoth(t, dbURL, srv.URL, "task", "cancel", missing); r.code != cli.ExitNotFound {
		t.Errorf("cancel of unknown task: exit %d %s", r.code, r.stderr)
	}
	r = cliBoth(t, dbURL, srv.URL, "step", "resolve", blocked.TaskUUID.String(), blocked.Steps["s_b"].String(),
		"--action", "reset_for_retry", "--reason", "r", "--by", "op")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "invalid transition from pending to ResetForRetry") {
		t.Errorf("reset of a pending step: exit %d %s", r.code, r.stderr)
	}

	// Cancel one task each way: the same line, and the task is cancelled.
	t1 := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{"n": 3}`))
	t2 := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{"n": 4}`))
	d := cliRunEnv(t, dbURL, nil, "task", "cancel", t1.TaskUUID.String())
	rm := cliRunEnv(t, "", nil, "task", "cancel", "--url", srv.URL, t2.TaskUUID.String())
	if d.code != 0 || rm.code != 0 || strings.ReplaceAll(d.stdout, t1.TaskUUID.String(), "X") != strings.ReplaceAll(rm.stdout, t2.TaskUUID.String(), "X") ||
		!strings.Contains(d.stdout, "(3 steps cancelled)") {
		t.Errorf("cancel: direct %d %q %s, remote %d %q %s", d.code, d.stdout, d.stderr, rm.code, rm.stdout, rm.stderr)
	}
	for _, id := range []uuid.UUID{t1.TaskUUID, t2.TaskUUID} {
		orchWaitTask(t, pool, id, 5*time.Second, state.TaskCancelled)
	}

	// Submit remotely: the task exists; the same identity again is a duplicate (exit 6).
	args := []string{"task", "submit", "--url", srv.URL, "--namespace", "api_steps", "--name", "api_chain", "--version", "1.0.0", "--context", `{"n": 9}`}
	r = cliRunEnv(t, "", nil, args...)
	id, err := uuid.Parse(strings.TrimSpace(r.stdout))
	if r.code != 0 || err != nil || orchScalar[int64](t, pool, `SELECT count(*) FROM tasker.tasks WHERE task_uuid = $1`, id) != 1 {
		t.Fatalf("remote submit: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r = cliRunEnv(t, "", nil, args...); r.code != cli.ExitDuplicate {
		t.Errorf("remote duplicate submit: exit %d %s", r.code, r.stderr)
	}
	if r = cliRunEnv(t, "", nil, "task", "submit", "--url", srv.URL, "--namespace", "api_steps", "--name", "nope", "--context", `{}`); r.code != cli.ExitNotFound {
		t.Errorf("remote submit of unknown template: exit %d %s", r.code, r.stderr)
	}
}

// TestCLIRemoteAuth: without credentials the CLI says how to give them; with an API key that
// lacks the permission it names the permission; with one that has it, it works.
func TestCLIRemoteAuth(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, apiChainYAML)
	o := orchNew(t, pool, nil)
	ct := orchCreate(t, o, orchRequest("api_steps", "api_chain", `{"n": 1}`))
	f := newAuthFixture(t)
	a, err := api.New(o, pool, api.Options{Logger: orchLogger(), Auth: f.cfg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	r := cliRunEnv(t, "", nil, "task", "list", "--url", srv.URL)
	if r.code != cli.ExitFailure || !strings.Contains(r.stderr, "not authenticated (HTTP 401: Missing authentication credentials)") ||
		!strings.Contains(r.stderr, "--token") {
		t.Errorf("no credentials: exit %d %s", r.code, r.stderr)
	}
	r = cliRunEnv(t, "", map[string]string{"TASKER_API_URL": srv.URL, "TASKER_API_KEY": "test-api-key-tasks-only"},
		"dlq", "stats")
	if r.code != cli.ExitFailure || !strings.Contains(r.stderr, "permission denied (HTTP 403): Missing required permission: dlq:stats") {
		t.Errorf("api key without dlq:stats: exit %d %s", r.code, r.stderr)
	}
	r = cliRunEnv(t, "", nil, "step", "resolve", "--url", srv.URL, "--token", f.token(t, "tasks:read"),
		ct.TaskUUID.String(), ct.Steps["s_a"].String(), "--action", "resolve_manually", "--reason", "r", "--by", "op")
	if r.code != cli.ExitFailure || !strings.Contains(r.stderr, "Missing required permission: steps:resolve") {
		t.Errorf("token without steps:resolve: exit %d %s", r.code, r.stderr)
	}
	r = cliRunEnv(t, "", map[string]string{"TASKER_API_TOKEN": f.token(t, "tasks:list")}, "task", "list", "--url", srv.URL)
	if r.code != cli.ExitOK || !strings.Contains(r.stdout, ct.TaskUUID.String()) {
		t.Errorf("token with tasks:list: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	r = cliRunEnv(t, "", nil, "task", "status", "--url", srv.URL, "--api-key", "test-api-key-full-access", ct.TaskUUID.String())
	if r.code != cli.ExitOK || !strings.Contains(r.stdout, "task "+ct.TaskUUID.String()) {
		t.Errorf("full-access key: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestCLITaskRetryAndStepResolve: task retry resets the failed step (remotely and directly, with
// the same output); step resolve's actions then finish the blocked task.
func TestCLITaskRetryAndStepResolve(t *testing.T) {
	dbURL, pool := testdb.New(t)
	orchRegister(t, pool, apiChainYAML)
	o := orchNew(t, pool, nil)
	orchRun(t, o)
	srv := apiServer(t, pool, o)
	t1, t2 := cliBlockedTask(t, pool, o, 1), cliBlockedTask(t, pool, o, 2)

	d := cliRunEnv(t, dbURL, nil, "task", "retry", t1.TaskUUID.String(), "--by", "op", "--reason", "db back")
	rm := cliRunEnv(t, "", nil, "task", "retry", "--url", srv.URL, t2.TaskUUID.String(), "--by", "op", "--reason", "db back")
	norm := func(s string, ct *orchestration.CreatedTask) string {
		return strings.ReplaceAll(s, ct.Steps["s_a"].String(), "S")
	}
	if d.code != 0 || rm.code != 0 || norm(d.stdout, t1) != norm(rm.stdout, t2) ||
		norm(d.stdout, t1) != "step s_a (S) reset for retry: pending, attempts 0/1\n" {
		t.Fatalf("retry: direct %d %q %s, remote %d %q %s", d.code, d.stdout, d.stderr, rm.code, rm.stdout, rm.stderr)
	}
	for _, ct := range []*orchestration.CreatedTask{t1, t2} {
		st := orchScalar[string](t, pool, `SELECT to_state FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1 AND most_recent`, ct.Steps["s_a"])
		attempts := orchScalar[int32](t, pool, `SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = $1`, ct.Steps["s_a"])
		meta := orchScalar[string](t, pool, `SELECT metadata::text FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1 AND most_recent`, ct.Steps["s_a"])
		if st != "pending" || attempts != 0 || !strings.Contains(meta, "ResetForRetry") {
			t.Errorf("s_a after retry: %s attempts %d metadata %s", st, attempts, meta)
		}
	}
	// Nothing left in error.
	if r := cliBoth(t, dbURL, srv.URL, "task", "retry", t1.TaskUUID.String(), "--by", "op"); r.code != 0 ||
		r.stdout != "task "+t1.TaskUUID.String()+" has no step in error; nothing reset\n" {
		t.Errorf("second retry: %d %q", r.code, r.stdout)
	}

	// Resolve t1's steps: resolve_manually directly, complete_manually remotely (JSON output),
	// the last one directly; the task leaves blocked_by_failures.
	id := t1.TaskUUID.String()
	r := cliRunEnv(t, dbURL, nil, "step", "resolve", id, t1.Steps["s_a"].String(), "--action", "resolve_manually", "--reason", "bypass", "--by", "op")
	if r.code != 0 || r.stdout != "step s_a ("+t1.Steps["s_a"].String()+") resolve_manually: resolved_manually, attempts 0/1\n" {
		t.Errorf("resolve_manually: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = cliRunEnv(t, "", nil, "step", "resolve", "--url", srv.URL, "-o", "json", id, t1.Steps["s_b"].String(),
		"--action", "complete_manually", "--result", `{"validated": true}`, "--reason", "by hand", "--by", "op@example.com")
	var step map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &step); r.code != 0 || err != nil || step["current_state"] != "complete" {
		t.Fatalf("complete_manually: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if res := step["results"].(map[string]any); res["result"].(map[string]any)["validated"] != true {
		t.Errorf("complete_manually results %v", res)
	}
	r = cliRunEnv(t, dbURL, nil, "step", "resolve", id, t1.Steps["s_c"].String(), "--action", "complete_manually", "--reason", "r", "--by", "op")
	if r.code != 0 {
		t.Fatalf("complete_manually s_c: %d %s", r.code, r.stderr)
	}
	orchWaitTask(t, pool, t1.TaskUUID, 5*time.Second, state.TaskResolvedManually)
}

// TestCLIDLQ: a stale task's DLQ entry read, listed and resolved, directly and remotely.
func TestCLIDLQ(t *testing.T) {
	dbURL, pool := testdb.New(t)
	orchRegister(t, pool, fnYAML)
	o := orchNew(t, pool, nil)
	srv := apiServer(t, pool, o)
	ct := orchCreate(t, o, orchRequest("fnq", "fn_task", `{"n": 1}`))
	task := ct.TaskUUID.String()

	if r := cliBoth(t, dbURL, srv.URL, "dlq", "show", task); r.code != cli.ExitNotFound || !strings.Contains(r.stderr, "DLQ entry not found for task "+task) {
		t.Errorf("dlq show before: %d %s", r.code, r.stderr)
	}
	if r := cliBoth(t, dbURL, srv.URL, "dlq", "list", "-o", "json"); r.stdout != "[]\n" {
		t.Errorf("empty dlq list -o json: %q", r.stdout)
	}
	mustExec(t, pool, dlqMakeStale(ct.TaskUUID))
	moved, err := o.DetectStaleTasks(context.Background(), orchestration.StalenessConfig{})
	if err != nil || len(moved) != 1 || moved[0].DLQEntry == nil {
		t.Fatalf("staleness pass: %v %v", moved, err)
	}
	entry := moved[0].DLQEntry.String()

	r := cliBoth(t, dbURL, srv.URL, "dlq", "list")
	if !strings.Contains(r.stdout, entry+"  "+task+"  StalenessTimeout  Pending  steps_in_process") {
		t.Errorf("dlq list:\n%s", r.stdout)
	}
	r = cliBoth(t, dbURL, srv.URL, "dlq", "list", "-o", "json")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 1 || entries[0]["dlq_entry_uuid"] != entry {
		t.Errorf("dlq list -o json: %v %s", err, r.stdout)
	}
	r = cliBoth(t, dbURL, srv.URL, "dlq", "show", task)
	for _, want := range []string{"entry:", entry, "StalenessTimeout", "task snapshot:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cliBoth(t, dbURL, srv.URL, "dlq", "stats")
	if !strings.Contains(r.stdout, "StalenessTimeout  1      1") {
		t.Errorf("dlq stats:\n%s", r.stdout)
	}
	// -o json: the same body, apart from the average resolution time, which grows with the clock.
	var stats [2][]map[string]any
	for i, extra := range []map[string]string{nil, {"TASKER_API_URL": srv.URL}} {
		r := cliRunEnv(t, dbURL, extra, "dlq", "stats", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &stats[i]); err != nil || r.code != 0 || len(stats[i]) != 1 {
			t.Fatalf("dlq stats -o json: %d %v %s", r.code, err, r.stdout)
		}
		delete(stats[i][0], "avg_resolution_time_minutes")
	}
	if a, b := cliMarshal(t, stats[0]), cliMarshal(t, stats[1]); a != b || stats[0][0]["total_entries"] != float64(1) {
		t.Errorf("dlq stats -o json: direct %s remote %s", a, b)
	}

	// Resolve remotely; the status is recorded; changing it again is a conflict (exit 6).
	r = cliRunEnv(t, "", nil, "dlq", "resolve", "--url", srv.URL, entry, "--status", "manually_resolved", "--by", "op", "--notes", "restarted")
	if r.code != 0 || r.stdout != "DLQ entry "+entry+": manually_resolved\n" {
		t.Fatalf("dlq resolve: %d %q %s", r.code, r.stdout, r.stderr)
	}
	got := orchScalar[string](t, pool, `SELECT resolution_status::text || ' ' || resolved_by || ' ' || resolution_notes FROM tasker.tasks_dlq WHERE dlq_entry_uuid = $1`, moved[0].DLQEntry)
	if got != "manually_resolved op restarted" {
		t.Errorf("entry after resolve: %s", got)
	}
	r = cliBoth(t, dbURL, srv.URL, "dlq", "resolve", entry, "--status", "permanently_failed")
	if r.code != cli.ExitDuplicate || !strings.Contains(r.stderr, "already resolved") {
		t.Errorf("second resolve: %d %s", r.code, r.stderr)
	}
	if r = cliBoth(t, dbURL, srv.URL, "dlq", "list", "--status", "pending"); strings.Contains(r.stdout, entry) {
		t.Errorf("dlq list --status pending shows the resolved entry:\n%s", r.stdout)
	}
}
