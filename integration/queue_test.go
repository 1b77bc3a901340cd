package integration

// The queue package against a real server: the typed client (including sends and acks inside a
// caller's transaction), tasker's notify wrappers as seen through the Listener, reconnection,
// and the Waker/Poll consumer pattern.

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/queue"
)

type qStepMsg struct {
	TaskUUID      string `json:"task_uuid"`
	StepUUID      string `json:"step_uuid"`
	CorrelationID string `json:"correlation_id"`
}

func TestQueueClientSendReadAck(t *testing.T) {
	e := newQEnv(t)
	q := queue.WorkerQueue("billing")
	if err := e.client.EnsureQueues(e.ctx, q, queue.StepResultsQueue, q); err != nil {
		t.Fatal(err)
	}
	body := qStepMsg{TaskUUID: "t-1", StepUUID: "s-1", CorrelationID: "c-1"}
	id, err := e.client.Send(e.ctx, nil, q, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.client.Send(e.ctx, nil, q, json.RawMessage(`{"raw":true}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := e.client.Read(e.ctx, q, 30, 10)
	if err != nil || len(msgs) != 2 || msgs[0].ID != id || msgs[1].ID != raw {
		t.Fatalf("Read = %+v, %v", msgs, err)
	}
	var got qStepMsg
	if err := json.Unmarshal(msgs[0].Body, &got); err != nil || got != body {
		t.Fatalf("body = %s (%v), want %+v", msgs[0].Body, err, body)
	}
	if msgs[0].Headers != nil || msgs[0].ReadCount != 1 || msgs[0].EnqueuedAt.IsZero() {
		t.Errorf("message fields %+v", msgs[0])
	}
	if ok, err := e.client.Archive(e.ctx, q, id); err != nil || !ok {
		t.Fatalf("Archive = %v, %v", ok, err)
	}
	if _, err := e.client.Send(e.ctx, nil, q, json.RawMessage(`{broken`), 0); err == nil {
		t.Error("invalid raw JSON was sent")
	}
	if _, err := e.client.Send(e.ctx, nil, "a;drop", body, 0); !errors.Is(err, queue.ErrInvalidName) {
		t.Errorf("send to a;drop = %v", err)
	}
	if _, err := e.client.Read(e.ctx, "missing_queue", 30, 1); !errors.Is(err, queue.ErrQueueNotFound) {
		t.Errorf("read of a missing queue = %v, want ErrQueueNotFound", err)
	}
}

// Sends and acknowledgements take part in the caller's transaction.
func TestQueueTransactions(t *testing.T) {
	e := newQEnv(t)
	q := queue.WorkerQueue("txns")
	if err := e.client.EnsureQueue(e.ctx, q); err != nil {
		t.Fatal(err)
	}
	l := qListen(t, e, queue.NotifyChannel("txns"))

	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.SendWithNotify(e.ctx, tx, q, map[string]int{"n": 1}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Send(e.ctx, tx, q, map[string]int{"n": 2}, 0); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := e.client.Metrics(e.ctx, q); err != nil || m.Length != 0 {
		t.Fatalf("after rollback: %+v, %v", m, err)
	}
	qExpectNoEvent(t, l, 300*time.Millisecond)

	id, err := e.client.Send(e.ctx, nil, q, "ack me", 0)
	if err != nil {
		t.Fatal(err)
	}
	tx, err = e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := e.client.ArchiveTx(e.ctx, tx, q, id); err != nil || !ok {
		t.Fatalf("ArchiveTx = %v, %v", ok, err)
	}
	_ = tx.Rollback(e.ctx)
	msgs, err := e.client.Read(e.ctx, q, 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("after rolled-back archive: %+v, %v", msgs, err)
	}

	tx, err = e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := e.client.DeleteTx(e.ctx, tx, q, id); err != nil || !ok {
		t.Fatalf("DeleteTx = %v, %v", ok, err)
	}
	sent, err := e.client.SendWithNotify(e.ctx, tx, q, "committed", 0)
	if err != nil {
		t.Fatal(err)
	}
	qExpectNoEvent(t, l, 200*time.Millisecond) // not before commit
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	ev := qNextEvent(t, l, 5*time.Second)
	if ev.Type != queue.EventMessageWithPayload || ev.MsgID != sent {
		t.Fatalf("event after commit = %+v", ev)
	}
	msgs, err = e.client.Read(e.ctx, q, 30, 10)
	if err != nil || len(msgs) != 1 || msgs[0].ID != sent {
		t.Fatalf("after commit: %+v, %v", msgs, err)
	}
}

func TestQueueNamespaceOfQueueMatchesSQL(t *testing.T) {
	e := newQEnv(t)
	names := []string{
		"orchestration_step_results", "orchestration_task_requests", "orchestrationx",
		"worker_payments_queue", "worker_a_b_queue", "worker_x_queue_queue", "worker__queue",
		"worker_queue", "payments_queue", "payments_domain_events", "payments_domain_events_dlq",
		"1abc_queue", "_abc_queue", "plain", "Worker_X_queue",
	}
	for _, n := range names {
		var sqlNS string
		if err := e.pool.QueryRow(e.ctx, `SELECT tasker.extract_queue_namespace($1)`, n).Scan(&sqlNS); err != nil {
			t.Fatal(err)
		}
		if got := queue.NamespaceOfQueue(n); got != sqlNS {
			t.Errorf("NamespaceOfQueue(%q) = %q, tasker.extract_queue_namespace = %q", n, got, sqlNS)
		}
	}
}

func TestQueueReadSpecific(t *testing.T) {
	e := newQEnv(t)
	q := queue.WorkerQueue("specific")
	ids := e.queueWith(t, q, 3)

	m, ok, err := e.client.ReadSpecific(e.ctx, q, ids[1], 30)
	if err != nil || !ok || m.ID != ids[1] || m.ReadCount != 1 || string(m.Body) != `{"i": 1}` {
		t.Fatalf("ReadSpecific = %+v, %v, %v", m, ok, err)
	}
	if d := time.Until(m.VT); d < 25*time.Second || d > 35*time.Second {
		t.Errorf("vt %v away, want about 30s", d)
	}
	if _, ok, err := e.client.ReadSpecific(e.ctx, q, ids[1], 30); err != nil || ok {
		t.Fatalf("ReadSpecific of a hidden message = %v, %v; want not ok", ok, err)
	}
	if _, ok, err := e.client.ReadSpecific(e.ctx, q, 987654, 30); err != nil || ok {
		t.Fatalf("ReadSpecific of a missing message = %v, %v", ok, err)
	}
	// A normal read skips the hidden message and takes the others in order.
	msgs, err := e.client.Read(e.ctx, q, 30, 10)
	if err != nil || len(msgs) != 2 || msgs[0].ID != ids[0] || msgs[1].ID != ids[2] {
		t.Fatalf("Read = %v, %v", qMsgIDs(msgs), err)
	}

	// A row locked by another transaction is reported as unavailable at once.
	if _, _, err := e.client.SetVT(e.ctx, q, ids[0], 0); err != nil {
		t.Fatal(err)
	}
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	if _, err := tx.Exec(e.ctx, `SELECT 1 FROM pgmq.q_worker_specific_queue WHERE msg_id = $1 FOR UPDATE`, ids[0]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, ok, err := e.client.ReadSpecific(e.ctx, q, ids[0], 30); err != nil || ok {
		t.Fatalf("ReadSpecific of a locked message = %v, %v", ok, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ReadSpecific waited %v for a row lock", d)
	}
	_ = tx.Rollback(e.ctx)
	if _, ok, err := e.client.ReadSpecific(e.ctx, q, ids[0], 30); err != nil || !ok {
		t.Fatalf("ReadSpecific after unlock = %v, %v", ok, err)
	}
	if _, _, err := e.client.ReadSpecific(e.ctx, "x'--", 1, 30); !errors.Is(err, queue.ErrInvalidName) {
		t.Errorf("ReadSpecific with a bad name = %v", err)
	}
}

func TestQueueListenerDeliversNotifications(t *testing.T) {
	e := newQEnv(t)
	l := qListen(t, e, queue.NotifyChannel("payments"), queue.GlobalNotifyChannel, queue.QueueCreatedChannel)
	q := queue.WorkerQueue("payments")

	if err := e.client.EnsureQueues(e.ctx, q, queue.StepResultsQueue); err != nil {
		t.Fatal(err)
	}
	created := map[string]queue.Event{}
	for range 2 {
		ev := qNextEvent(t, l, 5*time.Second)
		if ev.Type != queue.EventQueueCreated || ev.Channel != queue.QueueCreatedChannel || ev.CreatedAt.IsZero() {
			t.Fatalf("queue_created event = %+v", ev)
		}
		created[ev.QueueName] = ev
	}
	if created[q].Namespace != "payments" || created[queue.StepResultsQueue].Namespace != "orchestration" {
		t.Errorf("queue_created events = %+v", created)
	}

	body := qStepMsg{TaskUUID: "t", StepUUID: "s", CorrelationID: "c"}
	before := time.Now()
	id, err := e.client.SendWithNotify(e.ctx, nil, q, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	byChannel := map[string]queue.Event{}
	for range 2 {
		ev := qNextEvent(t, l, 5*time.Second)
		byChannel[ev.Channel] = ev
	}
	for _, ch := range []string{"pgmq_message_ready.payments", "pgmq_message_ready"} {
		ev, ok := byChannel[ch]
		if !ok {
			t.Fatalf("no notification on %q (got %v)", ch, byChannel)
		}
		if ev.Type != queue.EventMessageWithPayload || ev.MsgID != id || ev.QueueName != q ||
			ev.Namespace != "payments" || ev.DelaySeconds != 0 || ev.PayloadOmitted {
			t.Errorf("%s: event = %+v", ch, ev)
		}
		var got qStepMsg
		if err := json.Unmarshal(ev.Message, &got); err != nil || got != body {
			t.Errorf("%s: message = %s (%v)", ch, ev.Message, err)
		}
		if ev.ReadyAt.Before(before.Add(-5*time.Second)) || ev.ReadyAt.After(time.Now().Add(5*time.Second)) {
			t.Errorf("%s: ready_at = %v", ch, ev.ReadyAt)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(ev.Payload), &raw); err != nil {
			t.Fatalf("payload is not JSON: %v", err)
		}
		for _, k := range []string{"event_type", "msg_id", "queue_name", "namespace", "message", "ready_at", "delay_seconds"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("%s: payload lacks %q: %s", ch, k, ev.Payload)
			}
		}
	}

	// Large messages are signal-only; the consumer reads them by id.
	big := map[string]string{"blob": strings.Repeat("x", 8000)}
	bigID, err := e.client.SendWithNotify(e.ctx, nil, q, big, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev := qNextEvent(t, l, 5*time.Second)
	if ev.Type != queue.EventMessageReady || ev.MsgID != bigID || !ev.PayloadOmitted || ev.Message != nil || ev.QueueName != q {
		t.Fatalf("large message event = %+v", ev)
	}
	_ = qNextEvent(t, l, 5*time.Second) // its twin on the other channel
	m, ok, err := e.client.ReadSpecific(e.ctx, ev.QueueName, ev.MsgID, 30)
	if err != nil || !ok {
		t.Fatalf("ReadSpecific after signal = %v, %v", ok, err)
	}
	var gotBig map[string]string
	if err := json.Unmarshal(m.Body, &gotBig); err != nil || !reflect.DeepEqual(gotBig, big) {
		t.Errorf("large body mismatch (%v)", err)
	}

	// Orchestration queues notify the orchestration channel; we only hear the global one.
	resID, err := e.client.SendWithNotify(e.ctx, nil, queue.StepResultsQueue, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev = qNextEvent(t, l, 5*time.Second)
	if ev.Channel != queue.GlobalNotifyChannel || ev.Namespace != "orchestration" || ev.MsgID != resID {
		t.Fatalf("step result event = %+v", ev)
	}
	qExpectNoEvent(t, l, 200*time.Millisecond)

	// Batch notification: one batch_ready per channel.
	ids, err := e.client.SendBatchWithNotify(e.ctx, nil, q, []any{1, 2, 3}, 0)
	if err != nil || len(ids) != 3 {
		t.Fatalf("SendBatchWithNotify = %v, %v", ids, err)
	}
	ev = qNextEvent(t, l, 5*time.Second)
	if ev.Type != queue.EventBatchReady || ev.MessageCount != 3 || !reflect.DeepEqual(ev.MsgIDs, ids) || !ev.IsWakeup() {
		t.Fatalf("batch event = %+v", ev)
	}
}

func TestQueueListenerReconnectsAfterBackendKilled(t *testing.T) {
	e := newQEnv(t)
	q := queue.WorkerQueue("recon")
	if err := e.client.EnsureQueue(e.ctx, q); err != nil {
		t.Fatal(err)
	}
	l := qListen(t, e, queue.NotifyChannel("recon"))
	for round := range 2 {
		pid := l.BackendPID()
		if pid == 0 {
			t.Fatal("listener has no backend")
		}
		var killed bool
		if err := e.pool.QueryRow(e.ctx, `SELECT pg_terminate_backend($1)`, int64(pid)).Scan(&killed); err != nil || !killed {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
		}
		ev := qNextEvent(t, l, 10*time.Second)
		if ev.Type != queue.EventReconnected || !ev.IsWakeup() {
			t.Fatalf("round %d: first event after kill = %+v, want reconnected", round, ev)
		}
		if np := l.BackendPID(); np == 0 || np == pid {
			t.Fatalf("round %d: backend pid %d after reconnect (was %d)", round, np, pid)
		}
		id, err := e.client.SendWithNotify(e.ctx, nil, q, map[string]int{"round": round}, 0)
		if err != nil {
			t.Fatal(err)
		}
		ev = qNextEvent(t, l, 5*time.Second)
		if ev.Type != queue.EventMessageWithPayload || ev.MsgID != id || ev.Channel != queue.NotifyChannel("recon") {
			t.Fatalf("round %d: event after reconnect = %+v", round, ev)
		}
	}
}

// Idle periods trigger a ping; the connection keeps working through them.
func TestQueueListenerSurvivesIdleHealthChecks(t *testing.T) {
	e := newQEnv(t)
	q := queue.WorkerQueue("idle")
	if err := e.client.EnsureQueue(e.ctx, q); err != nil {
		t.Fatal(err)
	}
	l, err := queue.Listen(e.ctx, queue.ListenerConfig{
		URL: e.url, Channels: []string{queue.NotifyChannel("idle")}, HealthCheck: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	pid := l.BackendPID()
	qExpectNoEvent(t, l, 700*time.Millisecond)
	id, err := e.client.SendWithNotify(e.ctx, nil, q, "after idle", 0)
	if err != nil {
		t.Fatal(err)
	}
	ev := qNextEvent(t, l, 5*time.Second)
	if ev.MsgID != id || l.BackendPID() != pid {
		t.Fatalf("event %+v, pid %d -> %d", ev, pid, l.BackendPID())
	}
}

func TestQueueListenerStopsOnCancel(t *testing.T) {
	e := newQEnv(t)
	l := qListen(t, e, queue.NotifyChannel("stop"))
	pid := l.BackendPID()
	l.Close()
	select {
	case _, ok := <-l.Events():
		if ok {
			t.Fatal("event after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Events not closed after Close")
	}
	if l.BackendPID() != 0 {
		t.Error("BackendPID set after Close")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, int64(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listener backend still connected after Close")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A consumer built from Route + Poll gets notified messages at once and, when a notification is
// lost (here: a plain send that never notifies), still gets the message on the next interval.
func TestQueueWakerConsumer(t *testing.T) {
	e := newQEnv(t)
	q := queue.WorkerQueue("waker")
	if err := e.client.EnsureQueue(e.ctx, q); err != nil {
		t.Fatal(err)
	}
	l := qListen(t, e, queue.NotifyChannel("waker"))
	w := queue.NewWaker()
	go queue.Route(e.ctx, l.Events(), map[string]*queue.Waker{q: w})

	const interval = 1500 * time.Millisecond
	type arrival struct {
		id int64
		at time.Time
	}
	got := make(chan arrival, 16)
	go func() {
		_ = queue.Poll(e.ctx, w, interval, func(ctx2 context.Context) bool {
			msgs, err := e.client.Read(ctx2, q, 30, 5)
			if err != nil {
				return false
			}
			for _, m := range msgs {
				if _, err := e.client.Archive(ctx2, q, m.ID); err == nil {
					got <- arrival{m.ID, time.Now()}
				}
			}
			return len(msgs) == 5
		})
	}()
	time.Sleep(100 * time.Millisecond) // let the first (empty) poll run

	sentAt := time.Now()
	id, err := e.client.SendWithNotify(e.ctx, nil, q, "wake", 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.id != id {
			t.Fatalf("got %d, want %d", a.id, id)
		}
		if d := a.at.Sub(sentAt); d > interval/2 {
			t.Errorf("notified message consumed after %v, want well under the %v interval", d, interval)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("notified message not consumed")
	}

	silent, err := e.client.Send(e.ctx, nil, q, "no notification", 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.id != silent {
			t.Fatalf("got %d, want %d", a.id, silent)
		}
	case <-time.After(interval + 3*time.Second):
		t.Fatal("message without notification never consumed by the interval poll")
	}
}

func qListen(t *testing.T, e qEnv, channels ...string) *queue.Listener {
	t.Helper()
	l, err := queue.Listen(e.ctx, queue.ListenerConfig{URL: e.url, Channels: channels, MinBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

func qNextEvent(t *testing.T, l *queue.Listener, timeout time.Duration) queue.Event {
	t.Helper()
	select {
	case ev, ok := <-l.Events():
		if !ok {
			t.Fatal("listener stopped")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
		return queue.Event{}
	}
}

func qExpectNoEvent(t *testing.T, l *queue.Listener, d time.Duration) {
	t.Helper()
	select {
	case ev := <-l.Events():
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(d):
	}
}
