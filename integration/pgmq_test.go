package integration

// Behaviour of the pgmq SQL surface (our compat schema on servers without the extension, the
// real extension elsewhere). Everything here goes through pgmq.* functions or the documented
// pgmq.q_<name> / pgmq.a_<name> layout, so it holds for both.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pgmq "github.com/craigpastro/pgmq-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/queue"
)

// qEnv is a migrated database with a queue client on it.
type qEnv struct {
	ctx    context.Context
	url    string
	pool   *pgxpool.Pool
	client *queue.Client
}

func newQEnv(t *testing.T) qEnv {
	t.Helper()
	url, pool := testdb.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return qEnv{ctx: ctx, url: url, pool: pool, client: queue.NewClient(pool)}
}

// queueWith creates queue and sends n messages {"i": 0..n-1}; returns their ids in order.
func (e qEnv) queueWith(t *testing.T, name string, n int) []int64 {
	t.Helper()
	if err := e.client.EnsureQueue(e.ctx, name); err != nil {
		t.Fatalf("EnsureQueue(%s): %v", name, err)
	}
	if n == 0 {
		return nil
	}
	bodies := make([]any, n)
	for i := range bodies {
		bodies[i] = map[string]int{"i": i}
	}
	ids, err := e.client.SendBatch(e.ctx, nil, name, bodies, 0)
	if err != nil {
		t.Fatalf("SendBatch: %v", err)
	}
	if len(ids) != n {
		t.Fatalf("SendBatch returned %d ids, want %d", len(ids), n)
	}
	return ids
}

func TestPGMQConcurrentReadersNeverShareMessages(t *testing.T) {
	e := newQEnv(t)
	const q, total, readers = "concurrent_q", 600, 12
	sent := e.queueWith(t, q, total)

	var mu sync.Mutex
	seen := map[int64]int{} // msg id -> reader that got it
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for r := range readers {
		wg.Go(func() {
			for {
				msgs, err := e.client.Read(e.ctx, q, 120, 1+r%7)
				if err != nil {
					errs <- err
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					if prev, dup := seen[m.ID]; dup {
						errs <- fmt.Errorf("message %d delivered to readers %d and %d", m.ID, prev, r)
					}
					seen[m.ID] = r
					if m.ReadCount != 1 {
						errs <- fmt.Errorf("message %d read_ct %d, want 1", m.ID, m.ReadCount)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != total {
		t.Fatalf("readers got %d distinct messages, want %d", len(seen), total)
	}
	for _, id := range sent {
		if _, ok := seen[id]; !ok {
			t.Errorf("message %d never read", id)
		}
	}
	readersUsed := map[int]bool{}
	for _, r := range seen {
		readersUsed[r] = true
	}
	t.Logf("%d messages over %d readers, no overlap", total, len(readersUsed))
}

// Workers all ensure their queues at start-up; concurrent creates of one queue must not fail.
func TestPGMQConcurrentCreateIsSafe(t *testing.T) {
	e := newQEnv(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- e.client.EnsureQueues(e.ctx, "shared_q", "other_q") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.list_queues() WHERE queue_name IN ('shared_q', 'other_q')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("list_queues has %d of the 2 queues (%v)", n, err)
	}
}

func TestPGMQVisibilityTimeoutAndReadCount(t *testing.T) {
	e := newQEnv(t)
	const q = "vt_q"
	ids := e.queueWith(t, q, 1)

	first, err := e.client.Read(e.ctx, q, 1, 10)
	if err != nil || len(first) != 1 {
		t.Fatalf("first read = %v, %v", first, err)
	}
	m := first[0]
	if m.ID != ids[0] || m.ReadCount != 1 || string(m.Body) != `{"i": 0}` {
		t.Fatalf("first read got %+v", m)
	}
	if d := time.Until(m.VT); d < 500*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("vt is %v from now, want about 1s", d)
	}
	again, err := e.client.Read(e.ctx, q, 1, 10)
	if err != nil || len(again) != 0 {
		t.Fatalf("read while invisible = %v, %v", again, err)
	}
	time.Sleep(time.Until(m.VT) + 100*time.Millisecond)
	second, err := e.client.Read(e.ctx, q, 30, 10)
	if err != nil || len(second) != 1 {
		t.Fatalf("read after vt = %v, %v", second, err)
	}
	if second[0].ID != m.ID || second[0].ReadCount != 2 {
		t.Fatalf("read after vt got id %d read_ct %d, want %d and 2", second[0].ID, second[0].ReadCount, m.ID)
	}
	if !second[0].EnqueuedAt.Equal(m.EnqueuedAt) {
		t.Errorf("enqueued_at changed: %v -> %v", m.EnqueuedAt, second[0].EnqueuedAt)
	}
}

func TestPGMQReadIsFIFOAndConditional(t *testing.T) {
	e := newQEnv(t)
	const q = "fifo_q"
	ids := e.queueWith(t, q, 5)
	msgs, err := e.client.Read(e.ctx, q, 30, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := qMsgIDs(msgs); !slices.Equal(got, ids[:3]) {
		t.Fatalf("read 3 = %v, want the oldest %v", got, ids[:3])
	}
	// conditional: message @> filter, among the remaining visible ones.
	rows, err := e.pool.Query(e.ctx,
		`SELECT msg_id FROM pgmq.read($1::text, 30, 10, '{"i": 4}'::jsonb)`, q)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || !slices.Equal(got, []int64{ids[4]}) {
		t.Fatalf("conditional read = %v, %v; want [%d]", got, err, ids[4])
	}
}

func TestPGMQArchiveMovesRow(t *testing.T) {
	e := newQEnv(t)
	const q = "archive_q"
	ids := e.queueWith(t, q, 4)
	if _, err := e.client.Read(e.ctx, q, 60, 1); err != nil { // ids[0] now invisible, read_ct 1
		t.Fatal(err)
	}
	before := time.Now()
	ok, err := e.client.Archive(e.ctx, q, ids[0])
	if err != nil || !ok {
		t.Fatalf("archive of an invisible message = %v, %v; want true", ok, err)
	}
	var inQueue int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.q_archive_q WHERE msg_id = $1`, ids[0]).Scan(&inQueue); err != nil {
		t.Fatal(err)
	}
	if inQueue != 0 {
		t.Fatal("archived message still in pgmq.q_archive_q")
	}
	var (
		readCt     int
		archivedAt time.Time
		body       string
	)
	err = e.pool.QueryRow(e.ctx, `SELECT read_ct, archived_at, message::text FROM pgmq.a_archive_q WHERE msg_id = $1`, ids[0]).
		Scan(&readCt, &archivedAt, &body)
	if err != nil {
		t.Fatalf("archived row: %v", err)
	}
	if readCt != 1 || body != `{"i": 0}` {
		t.Errorf("archived row read_ct=%d message=%s", readCt, body)
	}
	if archivedAt.Before(before.Add(-5*time.Second)) || archivedAt.After(time.Now().Add(5*time.Second)) {
		t.Errorf("archived_at = %v, want about now", archivedAt)
	}
	if ok, err := e.client.Archive(e.ctx, q, ids[0]); err != nil || ok {
		t.Errorf("second archive = %v, %v; want false", ok, err)
	}
	moved, err := e.client.ArchiveBatch(e.ctx, q, []int64{ids[1], ids[2], 999999})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(moved)
	if !slices.Equal(moved, []int64{ids[1], ids[2]}) {
		t.Errorf("archive batch = %v, want %v", moved, ids[1:3])
	}
	var archived int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.a_archive_q`).Scan(&archived); err != nil || archived != 3 {
		t.Errorf("archive holds %d rows (%v), want 3", archived, err)
	}
}

func TestPGMQDelayedSendInvisibleUntilDue(t *testing.T) {
	e := newQEnv(t)
	const q = "delay_q"
	e.queueWith(t, q, 0)
	id, err := e.client.Send(e.ctx, nil, q, map[string]string{"k": "delayed"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	sentAt := time.Now()
	// pgmq-go's timestamp form as well: due in 1 hour.
	late, err := pgmq.SendWithDelayTimestamp(e.ctx, e.pool, q, json.RawMessage(`{"k":"late"}`), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := e.client.Read(e.ctx, q, 30, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("read before due = %v, %v", msgs, err)
	}
	m, err := e.client.Metrics(e.ctx, q)
	if err != nil || m.Length != 2 || m.VisibleLength != 0 {
		t.Fatalf("metrics before due = %+v, %v", m, err)
	}
	var msgs []queue.Message
	for time.Since(sentAt) < 5*time.Second {
		if msgs, err = e.client.Read(e.ctx, q, 30, 10); err != nil || len(msgs) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("read after delay = %v, %v; want message %d only (not %d)", msgs, err, id, late)
	}
	if waited := time.Since(sentAt); waited < 1500*time.Millisecond {
		t.Errorf("delayed message readable after %v, want about 2s", waited)
	}
}

func TestPGMQSetVTExtendsAndReleases(t *testing.T) {
	e := newQEnv(t)
	const q = "setvt_q"
	ids := e.queueWith(t, q, 1)
	if _, err := e.client.Read(e.ctx, q, 1, 1); err != nil {
		t.Fatal(err)
	}
	m, ok, err := e.client.SetVT(e.ctx, q, ids[0], 4) // extend the 1 s lease to 4 s
	if err != nil || !ok {
		t.Fatalf("SetVT = %v, %v", ok, err)
	}
	if d := time.Until(m.VT); d < 3*time.Second || d > 5*time.Second {
		t.Errorf("extended vt is %v away, want about 4s", d)
	}
	if m.ID != ids[0] || m.ReadCount != 1 {
		t.Errorf("SetVT returned %+v", m)
	}
	time.Sleep(1500 * time.Millisecond) // past the original lease
	if msgs, err := e.client.Read(e.ctx, q, 30, 1); err != nil || len(msgs) != 0 {
		t.Fatalf("read after original vt but within extension = %v, %v", msgs, err)
	}
	if _, ok, err := e.client.SetVT(e.ctx, q, ids[0], 0); err != nil || !ok { // give it back now
		t.Fatalf("SetVT 0 = %v, %v", ok, err)
	}
	msgs, err := e.client.Read(e.ctx, q, 30, 1)
	if err != nil || len(msgs) != 1 || msgs[0].ReadCount != 2 {
		t.Fatalf("read after release = %+v, %v", msgs, err)
	}
	if _, ok, err := e.client.SetVT(e.ctx, q, 424242, 10); err != nil || ok {
		t.Errorf("SetVT of a missing message = %v, %v; want false", ok, err)
	}
}

func TestPGMQDeleteSingleAndBatch(t *testing.T) {
	e := newQEnv(t)
	const q = "delete_q"
	ids := e.queueWith(t, q, 4)
	if ok, err := e.client.Delete(e.ctx, q, ids[0]); err != nil || !ok {
		t.Fatalf("delete = %v, %v", ok, err)
	}
	if ok, err := e.client.Delete(e.ctx, q, ids[0]); err != nil || ok {
		t.Fatalf("second delete = %v, %v; want false", ok, err)
	}
	got, err := e.client.DeleteBatch(e.ctx, q, []int64{ids[1], ids[3], ids[0], 777777})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int64{ids[1], ids[3]}) {
		t.Fatalf("delete batch = %v, want %v", got, []int64{ids[1], ids[3]})
	}
	msgs, err := e.client.Read(e.ctx, q, 30, 10)
	if err != nil || !slices.Equal(qMsgIDs(msgs), []int64{ids[2]}) {
		t.Fatalf("left in queue = %v, %v; want [%d]", qMsgIDs(msgs), err, ids[2])
	}
	var archived int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.a_delete_q`).Scan(&archived); err != nil || archived != 0 {
		t.Errorf("delete archived %d rows (%v)", archived, err)
	}
}

func TestPGMQMetrics(t *testing.T) {
	e := newQEnv(t)
	const q = "metrics_q"
	e.queueWith(t, q, 0)
	m, err := e.client.Metrics(e.ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if m.Queue != q || m.Length != 0 || m.TotalMessages != 0 || m.OldestAge != 0 {
		t.Fatalf("empty metrics = %+v", m)
	}
	ids := e.queueWith(t, q, 5)
	time.Sleep(1100 * time.Millisecond)
	if _, err := e.client.Read(e.ctx, q, 60, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Delete(e.ctx, q, ids[4]); err != nil {
		t.Fatal(err)
	}
	m, err = e.client.Metrics(e.ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if m.Length != 4 || m.VisibleLength != 2 || m.TotalMessages != 5 {
		t.Errorf("metrics = %+v; want length 4, visible 2, total 5", m)
	}
	if m.OldestAge < time.Second || m.OldestAge > 10*time.Second || m.NewestAge > m.OldestAge {
		t.Errorf("ages oldest=%v newest=%v", m.OldestAge, m.NewestAge)
	}
	if time.Since(m.ScrapedAt).Abs() > 10*time.Second {
		t.Errorf("scrape time %v", m.ScrapedAt)
	}
	e.queueWith(t, "metrics_other_q", 1)
	all, err := e.client.MetricsAll(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]queue.Metrics{}
	for _, m := range all {
		byName[m.Queue] = m
	}
	if byName[q].Length != 4 || byName["metrics_other_q"].Length != 1 {
		t.Errorf("metrics_all = %+v", all)
	}
	// tasker's worker health query shape.
	var n int64
	if err := e.pool.QueryRow(e.ctx, `SELECT queue_length FROM pgmq.metrics_all() WHERE queue_name = $1`, q).Scan(&n); err != nil || n != 4 {
		t.Errorf("metrics_all queue_length = %d, %v", n, err)
	}
}

func TestPGMQPurgeAndDrop(t *testing.T) {
	e := newQEnv(t)
	const q = "purge_q"
	ids := e.queueWith(t, q, 3)
	if _, err := e.client.Archive(e.ctx, q, ids[0]); err != nil {
		t.Fatal(err)
	}
	n, err := e.client.Purge(e.ctx, q)
	if err != nil || n != 2 {
		t.Fatalf("purge = %d, %v; want 2", n, err)
	}
	var archived int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.a_purge_q`).Scan(&archived); err != nil || archived != 1 {
		t.Errorf("purge touched the archive: %d rows (%v)", archived, err)
	}
	next, err := e.client.Send(e.ctx, nil, q, "after purge", 0)
	if err != nil || next <= ids[2] {
		t.Errorf("msg id after purge = %d (%v), want > %d", next, err, ids[2])
	}
	if ok, err := e.client.DropQueue(e.ctx, q); err != nil || !ok {
		t.Fatalf("drop = %v, %v", ok, err)
	}
	if ok, err := e.client.DropQueue(e.ctx, q); err != nil || ok {
		t.Fatalf("second drop = %v, %v; want false", ok, err)
	}
	var tables int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'pgmq' AND tablename IN ('q_purge_q', 'a_purge_q')`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("%d queue tables left after drop (%v)", tables, err)
	}
	var metaRows int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.meta WHERE queue_name = $1`, q).Scan(&metaRows); err != nil || metaRows != 0 {
		t.Errorf("meta rows left after drop: %d (%v)", metaRows, err)
	}
	if _, err := e.client.Read(e.ctx, q, 30, 1); !errors.Is(err, queue.ErrQueueNotFound) {
		t.Errorf("read of a dropped queue = %v, want ErrQueueNotFound", err)
	}
}

func TestPGMQReadWithPoll(t *testing.T) {
	e := newQEnv(t)
	const q = "poll_q"
	e.queueWith(t, q, 0)
	start := time.Now()
	msgs, err := e.client.ReadWithPoll(e.ctx, q, 30, 5, time.Second, 50*time.Millisecond)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("poll of empty queue = %v, %v", msgs, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("empty poll took %v, want about 1s", d)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = e.client.Send(e.ctx, nil, q, "late arrival", 0)
	}()
	start = time.Now()
	msgs, err = e.client.ReadWithPoll(e.ctx, q, 30, 5, 5*time.Second, 50*time.Millisecond)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != `"late arrival"` {
		t.Fatalf("poll = %v, %v", msgs, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("message sent after 300ms picked up after %v", d)
	}
}

// pgmq-go v0.6.0 (positional, untyped calls) against the schema.
func TestPGMQGoClientWorks(t *testing.T) {
	e := newQEnv(t)
	ctx, db := e.ctx, e.pool
	const q = "pgmqgo_q"
	if err := pgmq.CreateQueue(ctx, db, q); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.CreateQueue(ctx, db, q); err != nil {
		t.Fatalf("create is not idempotent: %v", err)
	}
	if err := pgmq.CreateUnloggedQueue(ctx, db, "pgmqgo_unlogged"); err != nil {
		t.Fatal(err)
	}
	id1, err := pgmq.Send(ctx, db, q, json.RawMessage(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	id2, err := pgmq.SendWithDelay(ctx, db, q, json.RawMessage(`{"n":2}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := pgmq.SendBatch(ctx, db, q, []json.RawMessage{json.RawMessage(`{"n":3}`), json.RawMessage(`{"n":4}`), json.RawMessage(`{"n":5}`)})
	if err != nil || len(batch) != 3 || batch[0] <= id2 || id2 <= id1 {
		t.Fatalf("ids %d %d %v (%v)", id1, id2, batch, err)
	}
	m, err := pgmq.Read(ctx, db, q, 30)
	if err != nil || m.MsgID != id1 || m.ReadCount != 1 || string(m.Message) != `{"n": 1}` || m.Headers != nil {
		t.Fatalf("Read = %+v, %v", m, err)
	}
	ms, err := pgmq.ReadBatch(ctx, db, q, 30, 2)
	if err != nil || len(ms) != 2 {
		t.Fatalf("ReadBatch = %v, %v", ms, err)
	}
	popped, err := pgmq.Pop(ctx, db, q)
	if err != nil || popped.MsgID != batch[1] || popped.ReadCount != 0 {
		t.Fatalf("Pop = %+v, %v; want %d unread", popped, err, batch[1])
	}
	if ok, err := pgmq.Archive(ctx, db, q, id1); err != nil || !ok {
		t.Fatalf("Archive = %v, %v", ok, err)
	}
	archived, err := pgmq.ArchiveBatch(ctx, db, q, []int64{id2, 999})
	if err != nil || !slices.Equal(archived, []int64{id2}) {
		t.Fatalf("ArchiveBatch = %v, %v", archived, err)
	}
	if ok, err := pgmq.Delete(ctx, db, q, batch[0]); err != nil || !ok {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if ok, err := pgmq.Delete(ctx, db, q, batch[0]); err != nil || ok {
		t.Fatalf("Delete missing = %v, %v", ok, err)
	}
	deleted, err := pgmq.DeleteBatch(ctx, db, q, []int64{batch[2], 998})
	if err != nil || !slices.Equal(deleted, []int64{batch[2]}) {
		t.Fatalf("DeleteBatch = %v, %v", deleted, err)
	}
	if _, err := pgmq.Pop(ctx, db, q); !errors.Is(err, pgmq.ErrNoRows) {
		t.Fatalf("Pop of empty queue = %v", err)
	}
	if err := pgmq.DropQueue(ctx, db, q); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.DropQueue(ctx, db, "pgmqgo_unlogged"); err != nil {
		t.Fatal(err)
	}
	var dropped bool
	if err := db.QueryRow(ctx, "SELECT pgmq.drop_queue($1)", q).Scan(&dropped); err != nil || dropped {
		t.Fatalf("drop_queue of a missing queue = %v, %v; want false", dropped, err)
	}
}

// pgmq-rs (used by tasker-core) calls with named arguments and selects result columns by name.
func TestPGMQNamedArgumentsAndColumns(t *testing.T) {
	e := newQEnv(t)
	ctx, db := e.ctx, e.pool
	if _, err := db.Exec(ctx, `SELECT pgmq.create(queue_name => $1::text)`, "named_q"); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := db.QueryRow(ctx, `SELECT send AS msg_id FROM pgmq.send(queue_name => $1::text, msg => $2::jsonb, delay => $3::integer)`,
		"named_q", `{"a":1}`, 0).Scan(&id); err != nil {
		t.Fatal(err)
	}
	var readID int64
	var readCt int32
	if err := db.QueryRow(ctx, `SELECT msg_id, read_ct, enqueued_at, vt, message FROM pgmq.read(queue_name => $1::text, vt => $2::integer, qty => $3::integer)`,
		"named_q", 30, 1).Scan(&readID, &readCt, new(time.Time), new(time.Time), new(json.RawMessage)); err != nil || readID != id || readCt != 1 {
		t.Fatalf("named read = %d/%d, %v", readID, readCt, err)
	}
	if err := db.QueryRow(ctx, `SELECT msg_id FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)`, "named_q", id, 0).Scan(&readID); err != nil || readID != id {
		t.Fatalf("set_vt = %d, %v", readID, err)
	}
	var archived bool
	if err := db.QueryRow(ctx, `SELECT archive FROM pgmq.archive(queue_name => $1::text, msg_id => $2::bigint)`, "named_q", id).Scan(&archived); err != nil || !archived {
		t.Fatalf("named archive = %v, %v", archived, err)
	}
	id2, _ := e.client.Send(ctx, nil, "named_q", 1, 0)
	var deleted bool
	if err := db.QueryRow(ctx, `SELECT delete FROM pgmq.delete(queue_name => $1::text, msg_id => $2::bigint)`, "named_q", id2).Scan(&deleted); err != nil || !deleted {
		t.Fatalf("named delete = %v, %v", deleted, err)
	}
	_, _ = e.client.Send(ctx, nil, "named_q", 2, 0)
	var purged int64
	if err := db.QueryRow(ctx, `SELECT purge_queue FROM pgmq.purge_queue(queue_name => $1::text)`, "named_q").Scan(&purged); err != nil || purged != 1 {
		t.Fatalf("purge_queue column = %d, %v", purged, err)
	}
	var name string
	var partitioned, unlogged bool
	var created time.Time
	if err := db.QueryRow(ctx, `SELECT queue_name, is_partitioned, is_unlogged, created_at FROM pgmq.list_queues() WHERE queue_name = 'named_q'`).
		Scan(&name, &partitioned, &unlogged, &created); err != nil || partitioned || unlogged {
		t.Fatalf("list_queues = %s %v %v, %v", name, partitioned, unlogged, err)
	}
	var qLen int64
	var oldest *int32
	if err := db.QueryRow(ctx, `SELECT queue_length, oldest_msg_age_sec FROM pgmq.metrics($1)`, "named_q").Scan(&qLen, &oldest); err != nil || qLen != 0 || oldest != nil {
		t.Fatalf("metrics = %d %v, %v", qLen, oldest, err)
	}
}

// The documented per-queue layout that tasker's SQL relies on (pgmq_read_specific_message reads
// pgmq.q_<name> directly; the msg_id sequence is q_<name>_msg_id_seq; names are lower-cased).
func TestPGMQTableLayout(t *testing.T) {
	e := newQEnv(t)
	if err := e.client.EnsureQueue(e.ctx, "Layout_Q"); err != nil {
		t.Fatal(err)
	}
	cols := func(table string) []string {
		rows, err := e.pool.Query(e.ctx, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = 'pgmq' AND table_name = $1 ORDER BY ordinal_position`, table)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	q := cols("q_layout_q")
	for _, want := range []string{"msg_id", "read_ct", "enqueued_at", "vt", "message", "headers"} {
		if !slices.Contains(q, want) {
			t.Errorf("pgmq.q_layout_q lacks %s (has %v)", want, q)
		}
	}
	a := cols("a_layout_q")
	for _, want := range []string{"msg_id", "read_ct", "enqueued_at", "archived_at", "vt", "message", "headers"} {
		if !slices.Contains(a, want) {
			t.Errorf("pgmq.a_layout_q lacks %s (has %v)", want, a)
		}
	}
	var seq *string
	if err := e.pool.QueryRow(e.ctx, `SELECT to_regclass('pgmq.q_layout_q_msg_id_seq')::text`).Scan(&seq); err != nil || seq == nil {
		t.Errorf("sequence pgmq.q_layout_q_msg_id_seq missing (%v)", err)
	}
	var meta string
	if err := e.pool.QueryRow(e.ctx, `SELECT queue_name FROM pgmq.meta WHERE lower(queue_name) = 'layout_q'`).Scan(&meta); err != nil || meta != "Layout_Q" {
		t.Errorf("meta row = %q, %v", meta, err)
	}
}

func TestPGMQQueueNameValidation(t *testing.T) {
	e := newQEnv(t)
	long := strings.Repeat("a", 48)
	for _, name := range []string{"a;drop", "x'--", long} {
		if err := queue.ValidateName(name); !errors.Is(err, queue.ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
		if err := e.client.EnsureQueue(e.ctx, name); !errors.Is(err, queue.ErrInvalidName) {
			t.Errorf("EnsureQueue(%q) = %v, want ErrInvalidName before any SQL", name, err)
		}
		// The server refuses them too, whoever calls it.
		_, err := e.pool.Exec(e.ctx, `SELECT pgmq.create($1)`, name)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Errorf("pgmq.create(%q) = %v, want a server error", name, err)
		}
	}
	if err := e.client.EnsureQueue(e.ctx, strings.Repeat("b", 47)); err != nil {
		t.Errorf("47-character name refused: %v", err)
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pgmq.meta WHERE queue_name = ANY($1)`,
		[]string{"a;drop", "x'--", long}).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d refused names reached pgmq.meta (%v)", n, err)
	}
}

func qMsgIDs(msgs []queue.Message) []int64 {
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// Compat-only: migrations/pgmq/compat.sql can be applied again over a live install without
// touching existing queues. Skipped where the real extension is installed.
func TestPGMQCompatSchemaIsIdempotent(t *testing.T) {
	e := newQEnv(t)
	var ext bool
	if err := e.pool.QueryRow(e.ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq')`).Scan(&ext); err != nil {
		t.Fatal(err)
	}
	if ext {
		t.Skip("pgmq extension installed; compat.sql is not used")
	}
	sql, err := os.ReadFile("../migrations/pgmq/compat.sql")
	if err != nil {
		t.Fatal(err)
	}
	ids := e.queueWith(t, "keep_q", 2)
	conn, err := e.pool.Acquire(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for range 2 {
		if _, err := conn.Conn().PgConn().Exec(e.ctx, "BEGIN;\n"+string(sql)+"\n;COMMIT;").ReadAll(); err != nil {
			t.Fatalf("re-applying compat.sql: %v", err)
		}
	}
	msgs, err := e.client.Read(e.ctx, "keep_q", 30, 10)
	if err != nil || !slices.Equal(qMsgIDs(msgs), ids) {
		t.Fatalf("after re-apply: %v, %v; want %v", qMsgIDs(msgs), err, ids)
	}
	if id, err := e.client.Send(e.ctx, nil, "keep_q", "more", 0); err != nil || id <= ids[1] {
		t.Fatalf("send after re-apply = %d, %v", id, err)
	}
}
