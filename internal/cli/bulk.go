package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/protocol"
)

// Bulk submission statuses, one per request line.
const (
	bulkCreated   = "created"
	bulkDuplicate = "duplicate"
	bulkError     = "error"
)

// bulkLine is the report of one request line of task submit --ndjson, printed as one JSON line.
type bulkLine struct {
	Line     int        `json:"line"`
	Status   string     `json:"status"`              // created | duplicate | error
	TaskUUID *uuid.UUID `json:"task_uuid,omitempty"` // created, or the existing task of a duplicate
	ExitCode int        `json:"exit_code"`           // what task submit exits with for this request alone
	Error    string     `json:"error,omitempty"`
}

// bulkSeverity orders exit codes from harmless to worst: the command exits with the worst code
// of its lines. A runtime failure (database) is worst: the request may be fine and was not
// written; then a request that can never succeed as written; then a missing template (it may
// be registered later); then a duplicate (the task exists).
var bulkSeverity = map[int]int{ExitOK: 0, ExitDuplicate: 1, ExitNotFound: 2, ExitUsage: 3, ExitFailure: 4}

// isNDJSON reports whether task submit reads a file of requests, one per line: with --ndjson,
// or a --file ending in .ndjson.
func (o submitOptions) isNDJSON() bool {
	return o.ndjson || strings.HasSuffix(strings.ToLower(o.file), ".ndjson")
}

// runBulkSubmit creates one task per non-blank line of the file (standard input for "-" or no
// --file), in order, and prints one bulkLine per request on stdout and a summary on stderr. It
// returns nil when every request created a task, else an error carrying the worst exit code
// (see bulkSeverity).
func runBulkSubmit(ctx context.Context, env Env, opts submitOptions) error {
	for _, f := range []struct {
		set  bool
		name string
	}{{opts.namespace != "", "--namespace"}, {opts.name != "", "--name"}, {opts.version != "", "--version"},
		{opts.context != "", "--context"}, {opts.idempotencyKey != "", "--idempotency-key"}, {opts.wait, "--wait"}} {
		if f.set {
			return usagef("%s cannot be used with NDJSON requests: every request line carries its own fields", f.name)
		}
	}
	in := env.Stdin
	if opts.file != "" && opts.file != "-" {
		f, err := os.Open(opts.file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	pool, err := connect(ctx, env, opts.dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	o, err := newOrchestrator(orchestration.DefaultConfig(), pool, Logger(env, "warn"))
	if err != nil {
		return err
	}

	r := bufio.NewReaderSize(in, 64<<10)
	out := json.NewEncoder(env.Stdout)
	counts := map[string]int{}
	worst := ExitOK
	for n := 1; ; n++ {
		line, size, readErr := readBulkLine(r, protocol.MaxTaskRequestBytes)
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return fmt.Errorf("read requests: line %d: %w", n, readErr)
		}
		if len(bytes.TrimSpace(line)) > 0 || size > protocol.MaxTaskRequestBytes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res := submitLine(ctx, o, pool, n, line, size)
			if err := out.Encode(res); err != nil {
				return err
			}
			counts[res.Status]++
			if bulkSeverity[res.ExitCode] > bulkSeverity[worst] {
				worst = res.ExitCode
			}
		}
		if readErr != nil {
			break
		}
	}
	total := counts[bulkCreated] + counts[bulkDuplicate] + counts[bulkError]
	summary := fmt.Sprintf("%d requests: %d created, %d duplicate, %d failed", total, counts[bulkCreated], counts[bulkDuplicate], counts[bulkError])
	fmt.Fprintln(env.Stderr, summary)
	switch worst {
	case ExitOK:
		return nil
	case ExitDuplicate:
		return &duplicateError{err: errors.New(summary)}
	case ExitNotFound:
		return &notFoundError{errors.New(summary)}
	case ExitUsage:
		return &usageError{summary}
	}
	return errors.New(summary)
}

// readBulkLine reads one line (without its line ending) of at most limit bytes. A longer line is
// read to its end and dropped: line is then nil and size is its length. err is io.EOF after the
// last line.
func readBulkLine(r *bufio.Reader, limit int64) (line []byte, size int64, err error) {
	over := false
	for {
		chunk, e := r.ReadSlice('\n')
		size += int64(len(chunk))
		if !over && size > limit+2 { // +2: room for "\r\n"
			over, line = true, nil
		}
		if !over {
			line = append(line, chunk...)
		}
		if e == bufio.ErrBufferFull {
			continue
		}
		err = e
		if bytes.HasSuffix(chunk, []byte("\r\n")) {
			size -= 2
		} else if bytes.HasSuffix(chunk, []byte("\n")) {
			size--
		}
		break
	}
	if over || size > limit {
		return nil, size, err
	}
	return line[:size], size, err
}

// submitLine creates the task of one request line and reports it.
func submitLine(ctx context.Context, o *orchestration.Orchestrator, pool *pgxpool.Pool, n int, line []byte, size int64) bulkLine {
	res := bulkLine{Line: n}
	fail := func(code int, err error) bulkLine {
		res.Status, res.ExitCode, res.Error = bulkError, code, err.Error()
		return res
	}
	if size > protocol.MaxTaskRequestBytes {
		return fail(ExitUsage, &protocol.SizeError{What: "task request", Size: size, Limit: protocol.MaxTaskRequestBytes})
	}
	req, err := orchestration.DecodeTaskRequest(line)
	if err != nil {
		return fail(ExitUsage, err)
	}
	if err := checkRequest(&req); err != nil {
		return fail(ExitUsage, err)
	}
	created, err := o.CreateTask(ctx, req)
	var dup *orchestration.DuplicateTaskError
	switch {
	case err == nil:
		res.Status, res.TaskUUID = bulkCreated, &created.TaskUUID
	case errors.As(err, &dup):
		res.Status, res.ExitCode = bulkDuplicate, ExitDuplicate
		var existing uuid.UUID
		if qerr := pool.QueryRow(ctx, `SELECT task_uuid FROM tasker.tasks WHERE identity_hash = $1`, dup.IdentityHash).Scan(&existing); qerr == nil {
			res.TaskUUID = &existing
		} else {
			res.Error = "the existing task could not be read: " + qerr.Error()
		}
	case errors.Is(err, orchestration.ErrInvalidRequest):
		return fail(ExitUsage, err)
	case errors.Is(err, orchestration.ErrTemplateNotFound):
		return fail(ExitNotFound, err)
	default:
		return fail(ExitFailure, err)
	}
	return res
}
