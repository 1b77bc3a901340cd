package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/internal/cli"
	"github.com/tasker-go/tasker/protocol"
)

const cliBulkYAML = `
name: bulk
namespace_name: cli_bulk
version: 1.0.0
steps:
  - name: cb_only
    handler: {callable: cli.bulk}
`

// cliBulkLine is one result line of task submit --ndjson.
type cliBulkLine struct {
	Line     int        `json:"line"`
	Status   string     `json:"status"`
	TaskUUID *uuid.UUID `json:"task_uuid"`
	ExitCode int        `json:"exit_code"`
	Error    string     `json:"error"`
}

func cliBulkParse(t *testing.T, stdout string) []cliBulkLine {
	t.Helper()
	var out []cliBulkLine
	for _, l := range strings.Split(strings.TrimRight(stdout, "\n"), "\n") {
		var r cliBulkLine
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("result line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// TestCLIBulkSubmitNDJSON submits 200 request lines (a duplicate of an earlier line, one that is
// not JSON, one over the size limit, and a blank line) in one CLI run, and checks the report of
// every line, the exit code of the worst one, and that each task was created exactly once.
func TestCLIBulkSubmitNDJSON(t *testing.T) {
	url, pool := testdb.New(t)
	orchRegister(t, pool, cliBulkYAML)
	const (
		lines    = 201 // 200 requests and a blank line
		dupLine  = 150 // repeats line 7
		badLine  = 60
		bigLine  = 120
		blank    = 100
		origLine = 7
	)
	var b strings.Builder
	for n := 1; n <= lines; n++ {
		switch n {
		case dupLine:
			fmt.Fprintf(&b, `{"namespace":"cli_bulk","name":"bulk","version":"1.0.0","context":{"order":%d}}`+"\n", origLine)
		case badLine:
			b.WriteString(`{"namespace":"cli_bulk","name":` + "\n")
		case bigLine:
			fmt.Fprintf(&b, `{"namespace":"cli_bulk","name":"bulk","version":"1.0.0","context":{"pad":%q}}`+"\n",
				strings.Repeat("x", protocol.MaxTaskRequestBytes))
		case blank:
			b.WriteString("  \r\n")
		default:
			fmt.Fprintf(&b, `{"namespace":"cli_bulk","name":"bulk","version":"1.0.0","context":{"order":%d}}`+"\r\n", n)
		}
	}
	path := filepath.Join(t.TempDir(), "requests.ndjson")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	r := cliRun(t, url, nil, "task", "submit", "--file", path)
	if r.code != cli.ExitUsage {
		t.Fatalf("exit %d, want %d (the worst line is not a valid request); stderr:\n%s", r.code, cli.ExitUsage, r.stderr)
	}
	if !strings.Contains(r.stderr, "200 requests: 197 created, 1 duplicate, 2 failed") {
		t.Fatalf("stderr %q, want the summary", r.stderr)
	}
	res := cliBulkParse(t, r.stdout)
	if len(res) != 200 {
		t.Fatalf("%d result lines, want 200", len(res))
	}
	created := map[int]uuid.UUID{}
	for i, x := range res {
		want := i + 1
		if want >= blank {
			want++
		}
		if x.Line != want {
			t.Fatalf("result %d reports line %d, want %d", i, x.Line, want)
		}
		switch x.Line {
		case dupLine:
			if x.Status != "duplicate" || x.ExitCode != cli.ExitDuplicate || x.TaskUUID == nil || *x.TaskUUID != created[origLine] {
				t.Fatalf("duplicate line: %+v, want the task of line %d (%s)", x, origLine, created[origLine])
			}
		case badLine:
			if x.Status != "error" || x.ExitCode != cli.ExitUsage || x.TaskUUID != nil || !strings.Contains(x.Error, "invalid") {
				t.Fatalf("bad line: %+v", x)
			}
		case bigLine:
			if x.Status != "error" || x.ExitCode != cli.ExitUsage || !strings.Contains(x.Error, "limit") {
				t.Fatalf("oversized line: %+v", x)
			}
		default:
			if x.Status != "created" || x.ExitCode != cli.ExitOK || x.TaskUUID == nil || x.Error != "" {
				t.Fatalf("line %d: %+v", x.Line, x)
			}
			created[x.Line] = *x.TaskUUID
		}
	}
	if n := cliTaskCount(t, pool, "cli_bulk"); n != 197 {
		t.Fatalf("%d tasks in the database, want 197", n)
	}
	for line, id := range created {
		var order int
		if err := pool.QueryRow(t.Context(), `SELECT (context->>'order')::int FROM tasker.tasks WHERE task_uuid = $1 AND initiator = 'tasker-cli'`, id).Scan(&order); err != nil || order != line {
			t.Fatalf("task %s of line %d: order %d (%v)", id, line, order, err)
		}
	}

	// Submitting the file again creates nothing: every request is a duplicate of its task.
	r = cliRun(t, url, nil, "task", "submit", "--file", path)
	if r.code != cli.ExitUsage {
		t.Fatalf("second run exit %d; stderr:\n%s", r.code, r.stderr)
	}
	for _, x := range cliBulkParse(t, r.stdout) {
		if id, ok := created[x.Line]; ok && (x.Status != "duplicate" || x.TaskUUID == nil || *x.TaskUUID != id) {
			t.Fatalf("second run line %d: %+v, want a duplicate of %s", x.Line, x, id)
		}
	}
	if n := cliTaskCount(t, pool, "cli_bulk"); n != 197 {
		t.Fatalf("%d tasks after the second run, want 197", n)
	}

	// Standard input with --ndjson: exit codes of the worst line.
	stdin := func(body string, args ...string) cliResult {
		return cliRun(t, url, strings.NewReader(body), append([]string{"task", "submit", "--ndjson"}, args...)...)
	}
	if r := stdin(`{"namespace":"cli_bulk","name":"bulk","context":{"order":1000}}` + "\n" +
		`{"namespace":"cli_bulk","name":"bulk","context":{"order":1001}}`); r.code != cli.ExitOK || len(cliBulkParse(t, r.stdout)) != 2 {
		t.Fatalf("all new: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := stdin(`{"namespace":"cli_bulk","name":"bulk","context":{"order":1000}}`+"\n", "--file", "-"); r.code != cli.ExitDuplicate {
		t.Fatalf("a duplicate: exit %d stderr %q", r.code, r.stderr)
	}
	if r := stdin(`{"namespace":"cli_bulk","name":"missing","context":{}}` + "\n" +
		`{"namespace":"cli_bulk","name":"bulk","context":{"order":1000}}`); r.code != cli.ExitNotFound {
		t.Fatalf("missing template and a duplicate: exit %d stderr %q", r.code, r.stderr)
	}
	if r := stdin("{}\n", "--wait"); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "--wait") {
		t.Fatalf("--ndjson --wait: exit %d stderr %q", r.code, r.stderr)
	}
	if n := cliTaskCount(t, pool, "cli_bulk"); n != 199 {
		t.Fatalf("%d tasks, want 199", n)
	}
}
