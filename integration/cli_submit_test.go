package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/internal/cli"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/state"
)

// cliResult is one run of the tasker command line.
type cliResult struct {
	code           int
	stdout, stderr string
}

// cliRun runs `tasker args...` against the database at url, with stdin (nil: empty).
func cliRun(t *testing.T, url string, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	env := cli.Env{Stdin: stdin, Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}}
	code := cli.Main(context.Background(), "tasker", args, env)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// cliTaskCount counts the tasks of a namespace.
func cliTaskCount(t *testing.T, pool *pgxpool.Pool, ns string) int64 {
	t.Helper()
	return orchScalar[int64](t, pool, `SELECT count(*) FROM tasker.tasks t
		JOIN tasker.named_tasks nt USING (named_task_uuid)
		JOIN tasker.task_namespaces tn USING (task_namespace_uuid) WHERE tn.name = $1`, ns)
}

// Two independent roots that both end in error: one with a permanent failure, one with a
// retryable failure and no attempts left.
const cliFailYAML = `
name: failing
namespace_name: cli_fail
version: 1.0.0
steps:
  - name: cf_permanent
    handler: {callable: cli.permanent}
    retry: {retryable: true, max_attempts: 3}
  - name: cf_exhausted
    handler: {callable: cli.flaky}
    retry: {retryable: true, max_attempts: 1}
`

func TestCLISubmitWaitShowsStoredRetryability(t *testing.T) {
	url, pool := testdb.New(t)
	orchRegister(t, pool, cliFailYAML)
	reg := handlers.NewRegistry()
	reg.MustRegister("cli.permanent", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return nil, handlers.PermanentError("card declined")
	}))
	reg.MustRegister("cli.flaky", handlers.Func(func(context.Context, *handlers.StepContext) (any, error) {
		return nil, handlers.RetryableError("gateway timeout")
	}))
	orchWorker(t, pool, "cli_fail", reg)
	orchRun(t, orchNew(t, pool, nil))

	r := cliRun(t, url, nil, "task", "submit", "--namespace", "cli_fail", "--name", "failing", "--context", `{}`,
		"--wait", "--timeout", "60s")
	if r.code != cli.ExitTaskFailed {
		t.Fatalf("submit --wait exit %d, want %d; stdout:\n%s\nstderr:\n%s", r.code, cli.ExitTaskFailed, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	task, err := uuid.Parse(lines[0])
	if err != nil {
		t.Fatalf("first line %q is not the task uuid", lines[0])
	}
	permanent := "cf_permanent  error  attempts 1/3  failed, not retryable: card declined"
	exhausted := "cf_exhausted  error  attempts 1/1  failed, attempts exhausted: gateway timeout"
	checkTree := func(what, out string, want ...string) {
		t.Helper()
		if strings.Contains(out, "retry at") {
			t.Errorf("%s shows a retry time for a failed step:\n%s", what, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}
	// The first error blocks the task, so --wait may return while the other step is still
	// being processed: it shows at least one of the two failures, and no retry time.
	if !strings.Contains(r.stdout, permanent) && !strings.Contains(r.stdout, exhausted) {
		t.Errorf("submit --wait shows neither failure:\n%s", r.stdout)
	}
	checkTree("submit --wait", r.stdout)
	steps := orchStepsByName(t, pool, task)
	orchWaitStep(t, pool, steps["cf_exhausted"], 30*time.Second, state.StepError)
	orchWaitStep(t, pool, steps["cf_permanent"], 30*time.Second, state.StepError)

	r = cliRun(t, url, nil, "task", "status", task.String())
	if r.code != cli.ExitOK {
		t.Fatalf("status exit %d: %s", r.code, r.stderr)
	}
	checkTree("task status", r.stdout, permanent, exhausted)

	r = cliRun(t, url, nil, "task", "status", "--json", task.String())
	if r.code != cli.ExitOK {
		t.Fatalf("status --json exit %d: %s", r.code, r.stderr)
	}
	var st struct {
		Steps []struct {
			Name           string           `json:"name"`
			State          string           `json:"current_state"`
			Retryable      bool             `json:"retryable"`
			ErrorRetryable *bool            `json:"error_retryable"`
			NextRetryAt    *json.RawMessage `json:"next_retry_at"`
			Backoff        *int             `json:"backoff_request_seconds"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	wantErrRetryable := map[string]bool{"cf_permanent": false, "cf_exhausted": true}
	for _, s := range st.Steps {
		want, ok := wantErrRetryable[s.Name]
		if !ok || s.State != "error" || s.Retryable || s.NextRetryAt != nil ||
			s.ErrorRetryable == nil || *s.ErrorRetryable != want {
			t.Errorf("step %+v: want state error, retryable false, next_retry_at null, error_retryable %v", s, want)
		}
	}
	if len(st.Steps) != 2 {
		t.Fatalf("%d steps in the JSON status", len(st.Steps))
	}
}

const cliDupYAML = `
name: dup
namespace_name: cli_dup
version: 1.0.0
steps:
  - name: cd_only
    handler: {callable: cli.noop}
`

func TestCLISubmitDuplicateExitCodeAndIdempotencyKey(t *testing.T) {
	url, pool := testdb.New(t)
	orchRegister(t, pool, cliDupYAML)
	submit := func(ctxJSON string, extra ...string) cliResult {
		args := append([]string{"task", "submit", "--namespace", "cli_dup", "--name", "dup", "--context", ctxJSON}, extra...)
		return cliRun(t, url, nil, args...)
	}
	created := func(r cliResult) string {
		t.Helper()
		id := strings.TrimSpace(r.stdout)
		if r.code != cli.ExitOK || uuid.Validate(id) != nil {
			t.Fatalf("submit exit %d stdout %q stderr %q, want a new task", r.code, r.stdout, r.stderr)
		}
		return id
	}
	duplicateOf := func(r cliResult, existing string) {
		t.Helper()
		if r.code != cli.ExitDuplicate || r.stdout != "" || !strings.Contains(r.stderr, "duplicate task: task "+existing+" already has this identity") {
			t.Fatalf("submit exit %d stdout %q stderr %q, want exit %d naming %s", r.code, r.stdout, r.stderr, cli.ExitDuplicate, existing)
		}
	}

	first := created(submit(`{"order": 1}`))
	duplicateOf(submit(`{"order": 1}`), first)
	// With a key the identity is the key: the same context is a new task...
	keyed := created(submit(`{"order": 1}`, "--idempotency-key", "order-1-try-2"))
	// ...and another context under the same key is a duplicate of it.
	duplicateOf(submit(`{"order": 2}`, "--idempotency-key", "order-1-try-2"), keyed)
	created(submit(`{"order": 1}`, "--idempotency-key", "order-1-try-3"))
	// The key also travels in a request file.
	req := `{"namespace": "cli_dup", "name": "dup", "version": "1.0.0", "context": {"order": 9},
		"initiator": "t", "source_system": "t", "reason": "t", "idempotency_key": "order-1-try-2"}`
	duplicateOf(cliRun(t, url, strings.NewReader(req), "task", "submit", "--file", "-"), keyed)
	if n := cliTaskCount(t, pool, "cli_dup"); n != 3 {
		t.Fatalf("%d tasks, want 3", n)
	}
	// Other refusals keep their codes.
	if r := submit(`{"order": 1`); r.code != cli.ExitUsage {
		t.Fatalf("bad context JSON: exit %d, want %d", r.code, cli.ExitUsage)
	}
}

// endlessReader yields '{' and then spaces forever, counting what was read.
type endlessReader struct{ n int64 }

func (r *endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	if r.n == 0 && len(p) > 0 {
		p[0] = '{'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestCLISubmitInputSizeLimit(t *testing.T) {
	url, pool := testdb.New(t)
	orchRegister(t, pool, cliDupYAML)
	limit := int64(protocol.MaxTaskRequestBytes)

	// Standard input that never ends: refused after reading limit+1 bytes.
	in := &endlessReader{}
	done := make(chan cliResult, 1)
	go func() { done <- cliRun(t, url, in, "task", "submit", "--file", "-") }()
	var r cliResult
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("task submit --file - kept reading an endless stdin")
	}
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "limit") {
		t.Fatalf("endless stdin: exit %d stderr %q, want %d and the limit", r.code, r.stderr, cli.ExitUsage)
	}
	if in.n > limit+1+64<<10 {
		t.Fatalf("read %d bytes of stdin, want about %d", in.n, limit+1)
	}

	// A file one byte over the limit, valid JSON otherwise.
	head := `{"namespace": "cli_dup", "name": "dup", "version": "1.0.0", "initiator": "t", "source_system": "t", "reason": "t", "context": {"pad": "`
	tail := `"}}`
	big := head + strings.Repeat("x", int(limit)+1-len(head)-len(tail)) + tail
	path := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cliRun(t, url, nil, "task", "submit", "--file", path); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "limit") {
		t.Fatalf("big file: exit %d stderr %q, want %d and the limit", r.code, r.stderr, cli.ExitUsage)
	}
	if n := cliTaskCount(t, pool, "cli_dup"); n != 0 {
		t.Fatalf("%d tasks created from oversized input", n)
	}
	// The same request at a normal size goes through, from a file and from stdin.
	small := head + `small"}}`
	if err := os.WriteFile(path, []byte(small), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cliRun(t, url, nil, "task", "submit", "--file", path); r.code != cli.ExitOK {
		t.Fatalf("small file: exit %d stderr %q", r.code, r.stderr)
	}
	if r := cliRun(t, url, strings.NewReader(strings.Replace(small, "small", "stdin", 1)), "task", "submit", "--file", "-"); r.code != cli.ExitOK {
		t.Fatalf("small stdin: exit %d stderr %q", r.code, r.stderr)
	}
}
