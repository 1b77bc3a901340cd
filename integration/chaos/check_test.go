package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
)

// leftover is a message still in a worker or orchestration queue.
type leftover struct {
	Queue    string
	MsgID    int64
	ReadCt   int
	Body     string
	Headers  string
	StepInfo string
}

// queueLeftovers lists the messages left in the load's worker queues and the orchestration
// queues.
func (r *run) queueLeftovers(ctx context.Context) ([]leftover, error) {
	qs := []string{queue.StepResultsQueue, queue.TaskRequestsQueue, queue.TaskFinalizationsQueue}
	for _, ns := range namespaces {
		qs = append(qs, queue.WorkerQueue(ns))
	}
	var out []leftover
	for _, q := range qs {
		table := pgx.Identifier{"pgmq", "q_" + q}.Sanitize()
		rows, err := r.pool.Query(ctx, `SELECT msg_id, read_ct, message::text, COALESCE(headers::text, ''),
			COALESCE((SELECT tr.to_state || ' attempts=' || COALESCE(ws.attempts, 0)
			            FROM tasker.workflow_steps ws
			            JOIN tasker.workflow_step_transitions tr ON tr.workflow_step_uuid = ws.workflow_step_uuid AND tr.most_recent
			           WHERE ws.workflow_step_uuid::text = m.message->>'step_uuid'), '')
			FROM `+table+` m ORDER BY msg_id`)
		if err != nil {
			return nil, err
		}
		got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (leftover, error) {
			l := leftover{Queue: q}
			err := row.Scan(&l.MsgID, &l.ReadCt, &l.Body, &l.Headers, &l.StepInfo)
			return l, err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// checkResult is one invariant.
type checkResult struct {
	Name     string
	OK       bool
	Problems []string
}

func (rep *report) add(name string, problems []string) {
	const maxShown = 15
	shown := problems
	if len(shown) > maxShown {
		shown = append(append([]string(nil), problems[:maxShown]...), fmt.Sprintf("... and %d more", len(problems)-maxShown))
	}
	rep.Checks = append(rep.Checks, checkResult{Name: name, OK: len(problems) == 0, Problems: shown})
}

// check evaluates every invariant from the database, the probe tables, the injected messages
// and the container logs, and gathers the report's figures.
func (r *run) check(ctx context.Context, finished bool) *report {
	rep := &report{Profile: r.p, Started: r.started, Duration: r.finishedAt.Sub(r.started).Round(time.Second)}
	t := r.t
	must := func(err error) {
		if err != nil {
			t.Fatalf("chaos: check query: %v", err)
		}
	}
	if !finished {
		rep.add("run finished before the deadline", []string{fmt.Sprintf("not every task was final after %s", r.p.Deadline)})
	}

	// 1. Every task final, as its scenario intends, with correct results.
	taskState := map[uuid.UUID]string{}
	rows, err := r.pool.Query(ctx, `SELECT t.task_uuid, tt.to_state FROM tasker.tasks t
		JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent`)
	must(err)
	for rows.Next() {
		var id uuid.UUID
		var st string
		must(rows.Scan(&id, &st))
		taskState[id] = st
	}
	must(rows.Err())
	stepResults := map[uuid.UUID]map[string]json.RawMessage{}
	stepCount := map[uuid.UUID]int{}
	rows, err = r.pool.Query(ctx, `SELECT ws.task_uuid, ns.name, COALESCE(ws.results->'result', 'null'::jsonb)::text
		FROM tasker.workflow_steps ws JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid`)
	must(err)
	for rows.Next() {
		var task uuid.UUID
		var name, res string
		must(rows.Scan(&task, &name, &res))
		if stepResults[task] == nil {
			stepResults[task] = map[string]json.RawMessage{}
		}
		stepResults[task][name] = json.RawMessage(res)
		stepCount[task]++
	}
	must(rows.Err())
	var final, wrongState, wrongResult []string
	rep.TasksByKind = map[string]int{}
	rep.TasksByState = map[string]int{}
	for _, s := range r.specs {
		if s.TaskUUID == uuid.Nil {
			final = append(final, fmt.Sprintf("a %s task was never created", s.Kind))
			continue
		}
		rep.Tasks++
		rep.TasksByKind[s.Kind]++
		st := taskState[s.TaskUUID]
		rep.TasksByState[st]++
		switch {
		case st != string(state.TaskComplete) && st != string(state.TaskBlockedByFailures) && !state.TaskState(st).IsTerminal():
			final = append(final, fmt.Sprintf("%s task %s is %q", s.Kind, s.TaskUUID, st))
		case st != string(s.Want):
			wrongState = append(wrongState, fmt.Sprintf("%s task %s is %s, want %s", s.Kind, s.TaskUUID, st, s.Want))
		case stepCount[s.TaskUUID] != s.Steps:
			wrongResult = append(wrongResult, fmt.Sprintf("%s task %s has %d steps, want %d", s.Kind, s.TaskUUID, stepCount[s.TaskUUID], s.Steps))
		case s.check != nil:
			if err := s.check(stepResults[s.TaskUUID]); err != nil {
				wrongResult = append(wrongResult, fmt.Sprintf("%s task %s: %v", s.Kind, s.TaskUUID, err))
			}
		}
	}
	if len(final) > 0 {
		final = append(final, r.diagnoseStuck(ctx)...)
	}
	rep.add("every task is final", final)
	rep.add("final states are the intended ones (blocked_by_failures only for permanent_failure tasks)", wrongState)
	rep.add("results are correct (step count and final values)", wrongResult)

	// 2. Every step's effect applied exactly once.
	must(r.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE tr.to_state = 'complete')
		FROM tasker.workflow_steps ws JOIN tasker.workflow_step_transitions tr
		  ON tr.workflow_step_uuid = ws.workflow_step_uuid AND tr.most_recent`).Scan(&rep.Steps, &rep.StepsComplete))
	must(r.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE success) FROM chaos.ledger`).Scan(&rep.LedgerRows, &rep.EffectsApplied))
	must(r.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE finished_at IS NULL) FROM chaos.invocations`).Scan(&rep.Executions, &rep.ExecutionsUnfinished))
	must(r.pool.QueryRow(ctx, `SELECT count(*) FROM chaos.invocations i WHERE NOT EXISTS (SELECT 1 FROM chaos.ledger l
		WHERE l.step_uuid = i.step_uuid AND l.attempt = i.attempt AND l.worker_id = i.worker_id)`).Scan(&rep.ExecutionsDiscarded))
	var once []string
	once = append(once, r.strings(ctx, `
		SELECT 'step ' || ws.workflow_step_uuid || ' (' || ns.name || ') is complete with ' || count(l.step_uuid) || ' successful ledger rows'
		  FROM tasker.workflow_steps ws
		  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
		  JOIN tasker.workflow_step_transitions tr ON tr.workflow_step_uuid = ws.workflow_step_uuid AND tr.most_recent
		  LEFT JOIN chaos.ledger l ON l.step_uuid = ws.workflow_step_uuid AND l.success
		 WHERE tr.to_state = 'complete'
		 GROUP BY ws.workflow_step_uuid, ns.name HAVING count(l.step_uuid) <> 1`)...)
	once = append(once, r.strings(ctx, `
		SELECT 'step ' || ws.workflow_step_uuid || ' succeeded in attempt ' || l.attempt || ' but attempts = ' || COALESCE(ws.attempts, 0)
		  FROM chaos.ledger l JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = l.step_uuid
		 WHERE l.success AND l.attempt <> COALESCE(ws.attempts, 0)`)...)
	once = append(once, r.strings(ctx, `
		SELECT 'step ' || l.step_uuid || ' has a successful ledger row but is ' || tr.to_state
		  FROM chaos.ledger l JOIN tasker.workflow_step_transitions tr ON tr.workflow_step_uuid = l.step_uuid AND tr.most_recent
		 WHERE l.success AND tr.to_state <> 'complete'`)...)
	once = append(once, r.strings(ctx, `
		SELECT 'ledger row (' || l.step_uuid || ', attempt ' || l.attempt || ') by ' || l.worker_id || ' has no matching invocation'
		  FROM chaos.ledger l WHERE NOT EXISTS (SELECT 1 FROM chaos.invocations i
		   WHERE i.step_uuid = l.step_uuid AND i.attempt = l.attempt AND i.worker_id = l.worker_id)`)...)
	once = append(once, r.strings(ctx, `SELECT 'violation: ' || worker_id || ' tried to complete ' || step_uuid || ' attempt ' || attempt || ' again: ' || detail FROM chaos.violations`)...)
	rep.add("every step's effect applied exactly once (ledger written in the completion transaction)", once)

	// 3. Queues: nothing left without a reason.
	left, err := r.queueLeftovers(ctx)
	must(err)
	var lq []string
	for _, l := range left {
		lq = append(lq, fmt.Sprintf("%s msg %d (read %d times, step %s): %s", l.Queue, l.MsgID, l.ReadCt, l.StepInfo, truncate(l.Body, 160)))
	}
	rep.add("no message left in the worker and orchestration queues", lq)

	// 4. Injected messages: malformed ones archived with the reason header; duplicates gone.
	rep.Injected = map[string]int{}
	rep.ArchiveReasons = map[string]int{}
	var badArchive []string
	for _, m := range r.inj.all() {
		rep.Injected[m.Kind]++
		table := pgx.Identifier{"pgmq", "a_" + m.Queue}.Sanitize()
		var reason *string
		err := r.pool.QueryRow(ctx, `SELECT headers->>'x-tasker-archive-reason' FROM `+table+` WHERE msg_id = $1`, m.MsgID).Scan(&reason)
		got := "<not archived>"
		if err == nil {
			got = "<no reason>"
			if reason != nil {
				got = *reason
			}
		} else if err != pgx.ErrNoRows {
			must(err)
		}
		rep.ArchiveReasons[m.Kind+" → "+got]++
		switch {
		case len(m.Want) > 0 && !slices.Contains(m.Want, got):
			badArchive = append(badArchive, fmt.Sprintf("%s message %d in %s archived as %s, want %s: %s", m.Kind, m.MsgID, m.Queue, got, strings.Join(m.Want, "|"), truncate(m.Body, 100)))
		case len(m.Want) == 0 && got == "<not archived>":
			// A duplicate step message may be the copy that was claimed and deleted on completion
			// (the original is then archived as step_not_claimable); it must not be left queued,
			// which check 3 covers.
		}
	}
	rep.InjectErrors = r.inj.errs
	rep.add("malformed, unknown-step and mismatched messages archived with x-tasker-archive-reason", badArchive)

	// 5. Figures from the database and the logs.
	must(r.pool.QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE position('"recovered_by":"orchestrator_' IN metadata->>'event') > 0),
		count(*) FILTER (WHERE position('"recovered_by":"worker_' IN metadata->>'event') > 0)
		FROM tasker.workflow_step_transitions
		WHERE to_state = 'enqueued_as_error_for_orchestration' AND metadata->>'event' LIKE '%Step abandoned in progress%'`).
		Scan(&rep.RecoveredSteps, &rep.RecoveredByOrchestrator, &rep.RecoveredByWorker))
	rep.Logs = r.logFigures()
	r.recoveryTimes(ctx, rep)
	rep.Kills = len(r.eventsOf("kill"))
	rep.Replacements = r.replaced
	rep.DBRestarts = len(r.eventsOf("db_restart"))
	rep.Partitions = len(r.eventsOf("partition"))
	rep.SilentDrops = len(r.eventsOf("silent_drop"))
	rep.Freezes = len(r.eventsOf("freeze"))
	r.mu.Lock()
	rep.MaxIdleInTransaction, rep.MaxLockWait = r.maxIdleTx.Round(100*time.Millisecond), r.maxLockWait.Round(100*time.Millisecond)
	r.mu.Unlock()
	rep.Events = r.eventsOf("")
	rep.SubmitRetries = r.sub.retries.Load()

	var late []string
	impaired, lateAfter := 0, 0
	// Only a freeze that caught short-timeout handlers in flight is sure to produce late
	// completions (a partitioned worker's new connections fail, so its results mostly never
	// arrive; a freeze with nothing in flight has nothing to complete late).
	for _, f := range rep.Recovery {
		if f.Late >= 0 && f.InFlight > 0 && strings.HasPrefix(f.Event, "freeze") {
			impaired++
			lateAfter += f.Late
		}
	}
	if impaired > 0 && lateAfter == 0 {
		late = append(late, "no worker completed a superseded claim after a freeze with handlers in flight (the fence was not exercised)")
	}
	rep.add("late completions of superseded claims were rejected (fence exercised after a partition/freeze)", late)
	rep.add("apps recovered by themselves after the PostgreSQL restart, the partition, the silent drop and the freeze", r.reconnected(rep.Logs))
	var slow []string
	for _, f := range rep.Recovery {
		if f.Back > backWithin {
			who := f.Event
			if f.BackApp != "" {
				who += " (" + f.BackApp + ")"
			}
			slow = append(slow, fmt.Sprintf("%s: back at work %s after the fault ended", who, f.Back))
		}
	}
	rep.add(fmt.Sprintf("every app hit by a fault was back at work within %s of its end", backWithin), slow)
	var quiet []string
	for name, n := range rep.Logs.ErrorsAfterRecovery {
		if n > 0 {
			quiet = append(quiet, fmt.Sprintf("%s logged %d errors more than 60s after the last fault", name, n))
		}
	}
	sort.Strings(quiet)
	rep.add("no errors logged more than 60s after the last fault", quiet)
	return rep
}

// reconnected checks from the logs that every app that lived through the PostgreSQL restart
// re-established its LISTEN connection and made progress afterwards (a worker completed a step,
// an orchestrator applied a result), and that a partitioned or frozen worker completed steps
// once the fault was lifted.
func (r *run) reconnected(lf logFigures) []string {
	after := func(name, msg string, t time.Time) bool {
		for _, m := range lf.Marks[name] {
			if m.Msg == msg && m.At.After(t) {
				return true
			}
		}
		return false
	}
	progress := map[string]string{"worker": "step completed", "orchestrator": "step result applied"}
	// A worker is only expected to complete a step after a fault if there was work for it: at
	// least three completions per worker (by any worker) after the fault ended. A fault lifted
	// after the load drained leaves a step or two (recoveries) that another worker may take,
	// which proves nothing either way.
	enough := func(since time.Time) (bool, error) {
		var n int
		err := r.pool.QueryRow(context.Background(), `SELECT count(*) FROM tasker.workflow_step_transitions
			WHERE to_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
			  AND created_at > $1`, since.UTC()).Scan(&n)
		return n >= 3*r.p.Workers, err
	}
	var out []string
	for _, e := range r.eventsOf("") {
		for _, a := range r.cl.all() {
			survived := a.Started.Before(e.At) && (a.Killed.IsZero() || a.Killed.After(e.End.Add(time.Minute)))
			switch {
			case e.Kind == "db_restart" && survived:
				if !after(a.Name, "listener reconnected", e.At) {
					out = append(out, a.Name+" did not re-establish LISTEN after the PostgreSQL restart")
				}
				if ok, err := enough(e.End); err != nil {
					return []string{"count completions after a fault: " + err.Error()}
				} else if ok && !after(a.Name, progress[a.Role], e.End) {
					out = append(out, fmt.Sprintf("%s logged no %q after the PostgreSQL restart", a.Name, progress[a.Role]))
				}
			case (e.Kind == "partition" || e.Kind == "silent_drop" || e.Kind == "freeze") && a.Name == e.Target && survived:
				if ok, err := enough(e.End); err != nil {
					return []string{"count completions after a fault: " + err.Error()}
				} else if ok && !after(a.Name, "step completed", e.End) {
					out = append(out, fmt.Sprintf("%s completed no step after its %s was lifted", a.Name, e.Kind))
				}
			}
		}
	}
	return out
}

// strings runs a query returning one text column.
func (r *run) strings(ctx context.Context, sql string, args ...any) []string {
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return []string{"query failed: " + err.Error()}
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return []string{"query failed: " + err.Error()}
	}
	return out
}

// diagnoseStuck describes tasks that are not final: their steps' states and attempts.
func (r *run) diagnoseStuck(ctx context.Context) []string {
	return r.strings(ctx, `
		SELECT 'stuck task ' || t.task_uuid || ' (' || nt.name || ', ' || tt.to_state || ' since ' || tt.created_at || '): ' ||
		       string_agg(ns.name || '=' || COALESCE(st.to_state, '?') || '/a' || COALESCE(ws.attempts, 0), ', ' ORDER BY ns.name)
		  FROM tasker.tasks t
		  JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
		  JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
		  JOIN tasker.workflow_steps ws ON ws.task_uuid = t.task_uuid
		  JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid
		  LEFT JOIN tasker.workflow_step_transitions st ON st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent
		 WHERE tt.to_state NOT IN ('complete', 'blocked_by_failures', 'error', 'cancelled', 'resolved_manually')
		 GROUP BY t.task_uuid, nt.name, tt.to_state, tt.created_at
		 ORDER BY tt.created_at LIMIT 20`)
}

// logFigures counts what the apps logged.
type logFigures struct {
	LateRejected        int            // "result discarded" / "checkpoint rejected": fenced late completions
	CompletionFailures  int            // completions that could not commit (database down or unreachable)
	WorkerRecoveries    int            // abandoned steps a worker found on redelivery and reported
	MalformedArchived   int            // workers archiving malformed step messages
	LateByWorker        map[string]int // late rejections per app
	ErrorsByApp         map[string]int // ERROR lines per app
	ErrorsAfterRecovery map[string]int // ERROR lines logged 60s after the last fault ended
	Samples             []string       // a few error messages, for the report
	// Marks holds, per app, when it logged progress ("step completed", "step result applied",
	// "queue reads resumed") and listener reconnections, for the reconnection checks.
	Marks map[string][]logMark `json:"-"`
}

// logMark is one log line the reconnection check looks for.
type logMark struct {
	At  time.Time
	Msg string
}

func (r *run) logFigures() logFigures {
	lf := logFigures{LateByWorker: map[string]int{}, ErrorsByApp: map[string]int{}, ErrorsAfterRecovery: map[string]int{},
		Marks: map[string][]logMark{}}
	var lastFault time.Time
	for _, e := range r.eventsOf("") {
		if e.Kind == "malformed" {
			continue
		}
		end := e.At
		if e.End.After(end) {
			end = e.End
		}
		if end.After(lastFault) {
			lastFault = end
		}
	}
	quietAfter := lastFault.Add(60 * time.Second)
	seen := map[string]int{}
	var order []string
	names := make([]string, 0, len(r.logs))
	for n := range r.logs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		sc := bufio.NewScanner(bytes.NewReader(r.logs[name]))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			i := bytes.IndexByte(line, '{')
			if i < 0 {
				continue
			}
			var rec struct {
				Time  time.Time `json:"time"`
				Level string    `json:"level"`
				Msg   string    `json:"msg"`
				Error string    `json:"error"`
			}
			if json.Unmarshal(line[i:], &rec) != nil {
				continue
			}
			switch {
			case rec.Msg == "step completed", rec.Msg == "step result applied", rec.Msg == "listener reconnected",
				rec.Msg == "queue reads resumed":
				lf.Marks[name] = append(lf.Marks[name], logMark{rec.Time, rec.Msg})
			case rec.Msg == "result discarded", strings.HasPrefix(rec.Msg, "checkpoint rejected"):
				lf.Marks[name] = append(lf.Marks[name], logMark{rec.Time, "late"})
			}
			switch {
			case rec.Msg == "result discarded" || strings.HasPrefix(rec.Msg, "checkpoint rejected"):
				lf.LateRejected++
				lf.LateByWorker[name]++
			case strings.HasPrefix(rec.Msg, "completion failed"):
				lf.CompletionFailures++
			case strings.HasPrefix(rec.Msg, "step abandoned in_progress by a dead worker") && strings.HasPrefix(name, "worker"):
				lf.WorkerRecoveries++
			case rec.Msg == "archiving malformed step message":
				lf.MalformedArchived++
			}
			if rec.Level == "ERROR" {
				lf.ErrorsByApp[name]++
				if !lastFault.IsZero() && rec.Time.After(quietAfter) {
					lf.ErrorsAfterRecovery[name]++
				}
				class := strings.TrimRight(name, "0123456789-") + ": " + rec.Msg + ": " + truncate(normalizeError(rec.Error), 120)
				if seen[class] == 0 {
					order = append(order, class)
				}
				seen[class]++
			}
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return seen[order[i]] > seen[order[j]] })
	if len(order) > 30 {
		order = order[:30]
	}
	for _, class := range order {
		lf.Samples = append(lf.Samples, fmt.Sprintf("%dx %s", seen[class], class))
	}
	return lf
}

var (
	uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	addrRE = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+(:\d+)?`)
	numRE  = regexp.MustCompile(`\b\d+\b`)
)

// normalizeError removes what differs between occurrences of one error (ids, addresses,
// counts) so that errors can be grouped.
func normalizeError(s string) string {
	s = strings.ReplaceAll(s, "\n", " / ")
	s = uuidRE.ReplaceAllString(s, "<uuid>")
	s = addrRE.ReplaceAllString(s, "<addr>")
	return numRE.ReplaceAllString(s, "<n>")
}

// backWithin is how soon after a fault ends every app it hit must be back at work (issue goal:
// any partition or silent drop recovered within 30 s of the heal).
const backWithin = 30 * time.Second

// backAfter is how long after t app name first logged progress or resumed reads; ok false when
// it logged neither.
func backAfter(lf logFigures, name string, t time.Time) (time.Duration, bool) {
	for _, m := range lf.Marks[name] {
		switch m.Msg {
		case "step completed", "step result applied", "queue reads resumed":
			if m.At.After(t) {
				return m.At.Sub(t), true
			}
		}
	}
	return 0, false
}

// recoveryTimes measures, for each kill, partition, silent drop and freeze, how long the steps
// the target was running took to have their effect applied by another worker and, once the
// fault was lifted, how long the target took to be back at work; for the database restart, how
// long until the first completion committed after the server was back and until every app was
// back at work.
func (r *run) recoveryTimes(ctx context.Context, rep *report) {
	for _, e := range r.eventsOf("") {
		switch e.Kind {
		case "kill", "partition", "silent_drop", "freeze":
			var worst time.Duration
			recovered := 0
			for _, s := range e.InFlight {
				var at *time.Time
				var by *string
				err := r.pool.QueryRow(ctx, `SELECT recorded_at, worker_id FROM chaos.ledger
					WHERE step_uuid = $1 AND success ORDER BY recorded_at LIMIT 1`, s.Step).Scan(&at, &by)
				if err != nil || at == nil || by == nil || *by == e.WorkerID {
					continue // applied by the target itself (it finished before the fault hit)
				}
				recovered++
				if d := at.Sub(e.At); d > worst {
					worst = d
				}
			}
			f := recoveryFigure{Event: e.Kind + " " + e.Target, Steps: recovered, InFlight: len(e.InFlight), Max: worst.Round(100 * time.Millisecond), Late: -1, Back: -1}
			if e.Kind != "kill" {
				if d, ok := backAfter(rep.Logs, e.Target, e.End); ok {
					f.Back = d.Round(100 * time.Millisecond)
				}
				f.Late = 0
				for _, m := range rep.Logs.Marks[e.Target] {
					if m.Msg == "late" && m.At.After(e.At) {
						f.Late++
					}
				}
			}
			rep.Recovery = append(rep.Recovery, f)
			if worst > rep.MaxRecovery {
				rep.MaxRecovery = worst.Round(100 * time.Millisecond)
			}
		case "db_restart":
			var first *time.Time
			_ = r.pool.QueryRow(ctx, `SELECT min(recorded_at) FROM chaos.ledger WHERE recorded_at > $1`, e.End).Scan(&first)
			f := recoveryFigure{Event: "db_restart", Down: e.End.Sub(e.At).Round(100 * time.Millisecond), Late: -1, Back: -1}
			for _, a := range r.cl.all() {
				if !a.Started.Before(e.At) || (!a.Killed.IsZero() && a.Killed.Before(e.End.Add(time.Minute))) {
					continue
				}
				if d, ok := backAfter(rep.Logs, a.Name, e.End); ok && d > f.Back {
					f.Back, f.BackApp = d.Round(100*time.Millisecond), a.Name
				}
			}
			if first != nil {
				f.Max = first.Sub(e.At).Round(100 * time.Millisecond)
			}
			// Steps whose completion the crash interrupted: started before it, committed after.
			var worst *float64
			_ = r.pool.QueryRow(ctx, `
				SELECT max(EXTRACT(EPOCH FROM (l.recorded_at - $1::timestamptz)))
				  FROM chaos.invocations i
				  JOIN chaos.ledger l ON l.step_uuid = i.step_uuid AND l.success
				 WHERE i.started_at < $1 AND i.started_at > $1::timestamptz - interval '2 seconds'
				   AND NOT EXISTS (SELECT 1 FROM chaos.ledger l2 WHERE l2.step_uuid = i.step_uuid AND l2.recorded_at < $1)`,
				e.At).Scan(&worst)
			if worst != nil {
				f.Steps = -1
				f.Slowest = (time.Duration(*worst * float64(time.Second))).Round(100 * time.Millisecond)
				if f.Slowest > rep.MaxRecovery {
					rep.MaxRecovery = f.Slowest
				}
			}
			rep.Recovery = append(rep.Recovery, f)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
