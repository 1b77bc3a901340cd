package integration

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/queue"
)

// The queue client's own statements (send with notification, take, delete, archive) leave the
// same rows and send the same notifications as tasker.pgmq_send_with_notify and PGMQ's
// functions, which a tasker-core process on the same database uses.
func TestQueueDirectStatementsMatchFunctions(t *testing.T) {
	e := newQEnv(t)
	q := queue.WorkerQueue("direct_ns")
	if err := e.client.EnsureQueue(e.ctx, q); err != nil {
		t.Fatal(err)
	}
	conn, err := db.ConnectOne(e.ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(e.ctx, `LISTEN "pgmq_message_ready.direct_ns"; LISTEN pgmq_message_ready`); err != nil {
		t.Fatal(err)
	}
	// Both notifications of one send, keyed by channel, without the fields that differ per
	// message (msg_id, ready_at).
	next := func() map[string]map[string]any {
		out := map[string]map[string]any{}
		for range 2 {
			ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
			n, err := conn.WaitForNotification(ctx)
			cancel()
			if err != nil {
				t.Fatalf("notification: %v", err)
			}
			var p map[string]any
			if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
				t.Fatalf("payload %q: %v", n.Payload, err)
			}
			if p["msg_id"] == nil || p["ready_at"] == nil {
				t.Errorf("payload without msg_id or ready_at: %s", n.Payload)
			}
			delete(p, "msg_id")
			delete(p, "ready_at")
			out[n.Channel] = p
		}
		return out
	}
	row := func(id int64) (vt time.Time, readCt int, msg, headers []byte) {
		if err := e.pool.QueryRow(e.ctx, `SELECT vt, read_ct, message, headers FROM pgmq.q_worker_direct_ns_queue WHERE msg_id = $1`, id).
			Scan(&vt, &readCt, &msg, &headers); err != nil {
			t.Fatalf("row %d: %v", id, err)
		}
		return
	}
	for _, body := range []string{`{"step_uuid":"s-1","n":1}`, `{"blob":"` + strings.Repeat("x", 7100) + `"}`} {
		for _, delay := range []int{0, 30} {
			var fnID int64
			if err := e.pool.QueryRow(e.ctx, `SELECT tasker.pgmq_send_with_notify($1, $2::jsonb, $3)`, q, body, delay).Scan(&fnID); err != nil {
				t.Fatal(err)
			}
			want := next()
			id, err := e.client.SendWithNotify(e.ctx, nil, q, json.RawMessage(body), delay)
			if err != nil {
				t.Fatal(err)
			}
			if got := next(); !reflect.DeepEqual(got, want) {
				t.Errorf("%d-byte body, delay %d: notifications\n got %v\nwant %v", len(body), delay, got, want)
			}
			// Sent without notification in a transaction, announced once it committed.
			var notes queue.Notices
			b := &pgx.Batch{}
			if err := e.client.QueueSend(b, q, json.RawMessage(body), delay, nil, &notes); err != nil {
				t.Fatal(err)
			}
			if err := e.pool.SendBatch(e.ctx, b).Close(); err != nil || notes.Len() != 1 {
				t.Fatalf("QueueSend: %v, %d notices", err, notes.Len())
			}
			if err := e.client.Notify(e.ctx, e.pool, &notes); err != nil {
				t.Fatal(err)
			}
			if got := next(); !reflect.DeepEqual(got, want) {
				t.Errorf("%d-byte body, delay %d: notifications after commit\n got %v\nwant %v", len(body), delay, got, want)
			}
			fvt, fct, fmsg, fh := row(fnID)
			vt, ct, msg, h := row(id)
			if ct != fct || string(msg) != string(fmsg) || (h == nil) != (fh == nil) || vt.Sub(fvt).Abs() > 2*time.Second {
				t.Errorf("row %d (vt %v read_ct %d headers %s) differs from the function's %d (vt %v read_ct %d headers %s)",
					id, vt, ct, h, fnID, fvt, fct, fh)
			}
		}
	}

	// Take, delete and archive, queued on a batch, against a message that is there and one
	// that is not.
	id, err := e.client.Send(e.ctx, nil, q, json.RawMessage(`{"a":1}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(e.ctx, `UPDATE pgmq.q_worker_direct_ns_queue SET headers = '{"h":"v"}' WHERE msg_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	var taken, gone, gated bool
	var headers []byte
	b := &pgx.Batch{}
	_ = e.client.QueueTakeIf(b, q, id, 60, "$3::boolean", true, &taken, &headers)
	_ = e.client.QueueTake(b, q, id+1000, 60, &gone)
	_ = e.client.QueueTakeIf(b, q, id, 1, "$3::boolean", false, &gated, nil)
	if err := e.pool.SendBatch(e.ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if !taken || gone || gated || string(headers) != `{"h": "v"}` {
		t.Errorf("take: taken %v, missing taken %v, gated taken %v, headers %s", taken, gone, gated, headers)
	}
	if vt, _, _, _ := row(id); time.Until(vt) < 50*time.Second {
		t.Errorf("taken message visible at %v, want about 60 s from now", vt)
	}
	var archived, again, deleted bool
	b = &pgx.Batch{}
	_ = e.client.QueueArchive(b, q, id, &archived)
	_ = e.client.QueueArchive(b, q, id, &again)
	if err := e.pool.SendBatch(e.ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	var archivedAt time.Time
	var aHeaders []byte
	if err := e.pool.QueryRow(e.ctx, `SELECT archived_at, headers FROM pgmq.a_worker_direct_ns_queue WHERE msg_id = $1`, id).Scan(&archivedAt, &aHeaders); err != nil {
		t.Fatalf("archive row: %v", err)
	}
	if !archived || again || archivedAt.IsZero() || string(aHeaders) != `{"h": "v"}` {
		t.Errorf("archive: %v, second %v, archived_at %v, headers %s", archived, again, archivedAt, aHeaders)
	}
	id2, _ := e.client.Send(e.ctx, nil, q, json.RawMessage(`{"a":2}`), 0)
	b = &pgx.Batch{}
	_ = e.client.QueueDelete(b, q, id2, &deleted)
	if err := e.pool.SendBatch(e.ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	var left int
	_ = e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.q_worker_direct_ns_queue WHERE msg_id = $1`, id2).Scan(&left)
	if !deleted || left != 0 {
		t.Errorf("delete: %v, rows left %d", deleted, left)
	}
	if ok, err := e.client.Delete(e.ctx, "missing_queue", 1); ok || err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("delete on a missing queue = %v, %v", ok, err)
	}

	// A read on a pool commits asynchronously; the setting ends with its own transaction.
	cfg, err := db.Config(e.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	one, err := db.ConnectConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	var before string
	if _, err := one.Exec(e.ctx, "SET synchronous_commit = remote_write"); err != nil {
		t.Fatal(err)
	}
	if err := one.QueryRow(e.ctx, "SHOW synchronous_commit").Scan(&before); err != nil {
		t.Fatal(err)
	}
	c1 := queue.NewClient(one)
	q2 := queue.WorkerQueue("direct_read")
	if err := c1.EnsureQueue(e.ctx, q2); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Send(e.ctx, nil, q2, json.RawMessage(`{"a":3}`), 0); err != nil {
		t.Fatal(err)
	}
	if msgs, err := c1.Read(e.ctx, q2, 30, 5); err != nil || len(msgs) != 1 || string(msgs[0].Body) != `{"a": 3}` || msgs[0].ReadCount != 1 {
		t.Fatalf("read on a one-connection pool: %d messages, %v", len(msgs), err)
	}
	var sc string
	if err := one.QueryRow(e.ctx, "SHOW synchronous_commit").Scan(&sc); err != nil || sc != before {
		t.Errorf("synchronous_commit after a read = %q (%v), want the session's %q", sc, err, before)
	}
}
