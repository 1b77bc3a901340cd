package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/client"
)

// apiStub answers every request with status and tasker-core's error body, recording the last
// request's headers and path.
type apiStub struct {
	status   int
	body     string
	lastPath string
	lastHdr  http.Header
}

func (s *apiStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.lastPath, s.lastHdr = r.URL.RequestURI(), r.Header.Clone()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	_, _ = w.Write([]byte(s.body))
}

func runWithEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	e := noDatabaseEnv(&out, &errOut)
	e.Getenv = func(k string) string { return env[k] }
	code := Main(context.Background(), "tasker", args, e)
	return result{code, out.String(), errOut.String()}
}

func TestRemoteErrorsMapToExitCodes(t *testing.T) {
	id := "7f3c9a52-3c1e-4f7b-9d55-0c8b1f2e4a10"
	for _, c := range []struct {
		status int
		body   string
		code   int
		want   string
	}{
		{404, `{"error":{"code":"NOT_FOUND","message":"Resource not found"}}`, ExitNotFound, "task not found: " + id},
		{409, `{"error":{"code":"CONFLICT","message":"already resolved"}}`, ExitDuplicate, "already resolved"},
		{400, `{"error":{"code":"BAD_REQUEST","message":"Cannot cancel a completed task"}}`, ExitUsage, "Cannot cancel a completed task"},
		{401, `{"error":{"code":"AUTHENTICATION_FAILED","message":"Missing authentication credentials"}}`, ExitFailure,
			"not authenticated (HTTP 401: Missing authentication credentials): give a token (--token or TASKER_API_TOKEN) or an API key (--api-key or TASKER_API_KEY)"},
		{403, `{"error":{"code":"AUTHORIZATION_FAILED","message":"Missing required permission: tasks:cancel"}}`, ExitFailure,
			"permission denied (HTTP 403): Missing required permission: tasks:cancel"},
		{500, `{"error":{"code":"DATABASE_ERROR","message":"Database operation failed"}}`, ExitFailure, "HTTP 500 DATABASE_ERROR: Database operation failed"},
	} {
		stub := &apiStub{status: c.status, body: c.body}
		srv := httptest.NewServer(stub)
		r := runWithEnv(t, map[string]string{"TASKER_API_URL": srv.URL, "TASKER_API_KEY": "k1"}, "task", "cancel", id)
		srv.Close()
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("HTTP %d: exit %d, stderr %q; want %d and %q", c.status, r.code, r.stderr, c.code, c.want)
		}
		if stub.lastHdr.Get("X-API-Key") != "k1" || stub.lastHdr.Get("Authorization") != "" {
			t.Errorf("HTTP %d: headers %v", c.status, stub.lastHdr)
		}
	}
}

func TestRemoteFlagsOverrideEnvironmentAndSendBearer(t *testing.T) {
	stub := &apiStub{status: 200, body: `{"tasks":[],"pagination":{"page":1,"per_page":100,"total_count":0,"total_pages":0,"has_next":false,"has_previous":false}}`}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	r := runWithEnv(t, map[string]string{"TASKER_API_URL": "http://127.0.0.1:1", "TASKER_API_TOKEN": "env-token"},
		"task", "list", "--url", srv.URL, "--token", "flag-token", "--state", "pending", "-o", "json")
	if r.code != ExitOK || r.stdout != "[]\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := stub.lastHdr.Get("Authorization"); got != "Bearer flag-token" {
		t.Errorf("Authorization %q", got)
	}
	if stub.lastPath != "/v1/tasks?page=1&per_page=100&status=pending" {
		t.Errorf("path %q", stub.lastPath)
	}
	if r := runWithEnv(t, nil, "task", "list", "--url", "ftp://x"); r.code != ExitConfig {
		t.Errorf("bad --url: exit %d %s", r.code, r.stderr)
	}
}

func TestOperatorCommandLines(t *testing.T) {
	task, step := "7f3c9a52-3c1e-4f7b-9d55-0c8b1f2e4a10", "0c8b1f2e-4a10-4f7b-9d55-7f3c9a523c1e"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "list", "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag: want one of table, json`},
		{[]string{"step", "resolve", task}, "want a task uuid and a step uuid, got 1 arguments"},
		{[]string{"step", "resolve", task, "x", "--action", "resolve_manually"}, `want a step uuid, got "x"`},
		{[]string{"step", "resolve", task, step}, "--action is required (reset_for_retry|resolve_manually|complete_manually)"},
		{[]string{"step", "resolve", task, step, "--action", "nope"}, "want one of reset_for_retry, resolve_manually, complete_manually"},
		{[]string{"step", "resolve", task, step, "--action", "resolve_manually", "--by", "op"}, "--reason is required"},
		{[]string{"step", "resolve", task, step, "--action", "resolve_manually", "--reason", "r"}, "--by is required"},
		{[]string{"step", "resolve", task, step, "--action", "reset_for_retry", "--reason", "r", "--by", "op", "--result", "{}"},
			"--result and --metadata go with --action complete_manually only"},
		{[]string{"step", "resolve", task, step, "--action", "complete_manually", "--reason", "r", "--by", "op", "--result", "{"},
			"--result is not valid JSON"},
		{[]string{"dlq", "resolve", task}, "--status is required"},
		{[]string{"dlq", "resolve", task, "--status", "done"}, "want one of pending, manually_resolved, permanently_failed, cancelled"},
		{[]string{"dlq", "show"}, "want one task uuid, got 0 arguments"},
		{[]string{"dlq", "list", "--limit", "0"}, "--limit must be at least 1"},
		{[]string{"task", "retry"}, "want one task uuid"},
		{[]string{"task", "submit", "--url", "http://127.0.0.1:1", "--ndjson"}, "not available with --url"},
	} {
		r := run(t, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, r.code, r.stderr, ExitUsage, c.want)
		}
	}
	for _, args := range [][]string{{"task", "retry", "--help"}, {"step", "resolve", "--help"}, {"dlq", "--help"}, {"dlq", "resolve", "-h"}} {
		if r := run(t, args...); r.code != ExitOK || !strings.Contains(r.stdout, "--url") {
			t.Errorf("%q: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := run(t, "task", "retry", "--help"); !strings.Contains(r.stdout, "reset_for_retry") || !strings.Contains(r.stdout, "blocked_by_failures stays blocked") {
		t.Errorf("task retry --help does not say what it does:\n%s", r.stdout)
	}
}

func TestManualActionBodies(t *testing.T) {
	env := Env{Getenv: func(string) string { return "" }}
	op := operator{reason: "why", by: "op"}
	for _, c := range []struct {
		action, result string
		want           client.ManualAction
	}{
		{"reset_for_retry", "", client.ManualAction{ActionType: "reset_for_retry", Reason: "why", ResetBy: "op"}},
		{"resolve_manually", "", client.ManualAction{ActionType: "resolve_manually", Reason: "why", ResolvedBy: "op"}},
	} {
		got, err := manualAction(env, c.action, c.result, "", op)
		if err != nil || got.ActionType != c.want.ActionType || got.ResetBy != c.want.ResetBy || got.ResolvedBy != c.want.ResolvedBy ||
			got.CompletionData != nil {
			t.Errorf("%s: %+v %v", c.action, got, err)
		}
	}
	got, err := manualAction(env, "complete_manually", `{"ok":1}`, `{"t":"x"}`, op)
	if err != nil || got.CompletedBy != "op" || string(got.CompletionData.Result) != `{"ok":1}` || string(got.CompletionData.Metadata) != `{"t":"x"}` {
		t.Errorf("complete_manually: %+v %v", got, err)
	}
	got, _ = manualAction(env, "complete_manually", "", "", op)
	if string(got.CompletionData.Result) != "null" {
		t.Errorf("complete_manually without --result: %s", got.CompletionData.Result)
	}
}

func TestTaskTableRendering(t *testing.T) {
	var b bytes.Buffer
	err := printTaskTable(&b, []client.Task{{TaskUUID: "7f3c9a52-3c1e-4f7b-9d55-0c8b1f2e4a10", Namespace: "ns", Name: "n", Version: "1.0.0",
		Status: "complete", CompletedSteps: 2, TotalSteps: 3, CreatedAt: "2026-01-02T03:04:05.123456Z"}})
	want := "TASK                                  NAMESPACE/NAME  VERSION  STATE     STEPS DONE  CREATED\n" +
		"7f3c9a52-3c1e-4f7b-9d55-0c8b1f2e4a10  ns/n            1.0.0    complete  2/3         2026-01-02T03:04:05Z\n"
	if err != nil || b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
	if got := apiTime("2026-01-02T03:04:05.5"); got != "2026-01-02T03:04:05Z" {
		t.Errorf("naive time: %s", got)
	}
}
