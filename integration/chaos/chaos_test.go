package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/tasker-go/tasker/integration/chaos/probe"
	"github.com/tasker-go/tasker/migrations"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/worker"
)

// event is one fault the driver injected.
type event struct {
	Kind     string // kill, db_restart, partition, silent_drop, freeze, malformed
	At       time.Time
	End      time.Time // db_restart: server answering again; partition, silent_drop, freeze: lifted
	Target   string    // app name
	WorkerID string
	InFlight []stepAttempt // handlers running on the target when it happened
	Progress float64       // fraction of tasks final when it fired
	Note     string
}

type stepAttempt struct {
	Step    uuid.UUID
	Attempt int32
	Name    string
}

// plannedEvent fires when the fraction of final tasks reaches At.
type plannedEvent struct {
	At   float64
	Kind string
}

func plan(p profile) []plannedEvent {
	var out []plannedEvent
	add := func(at float64, kind string) { out = append(out, plannedEvent{at, kind}) }
	// Faults fire early enough that work remains for the recovery to be measured.
	killAt := map[int][]float64{1: {0.15}, 5: {0.05, 0.15, 0.35, 0.45, 0.6}}[p.Kills]
	if killAt == nil {
		for i := 0; i < p.Kills; i++ {
			killAt = append(killAt, 0.05+0.6*float64(i)/float64(max(p.Kills, 1)))
		}
	}
	for _, at := range killAt {
		add(at, "kill")
	}
	for i := 0; i < p.Malformed; i++ {
		add(0.2+0.5*float64(i)/float64(max(p.Malformed, 1)), "malformed")
	}
	if p.DBRestart {
		add(0.25, "db_restart")
	}
	if p.Partition {
		add(0.4, "partition")
	}
	if p.SilentDrop {
		add(0.45, "silent_drop")
	}
	if p.Freeze {
		add(0.5, "freeze")
	}
	// Stable by fraction.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].At < out[j-1].At; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// run is the state of one chaos run shared by the driver, the checks and the report.
type run struct {
	t       *testing.T
	p       profile
	cl      *cluster
	pool    *pgxpool.Pool
	specs   []*taskSpec
	inj     *injector
	sub     *submitter
	started time.Time

	mu          sync.Mutex
	events      []event
	impaired    map[string]bool // workers partitioned or frozen now
	maxIdleTx   time.Duration   // longest "idle in transaction" session the sampler saw
	maxLockWait time.Duration   // longest lock wait the sampler saw
	replaced    int
	finishedAt  time.Time
	logs        map[string][]byte
}

func (r *run) addEvent(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *run) eventsOf(kind string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if kind == "" || e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestChaos runs the chaos scenario of the selected profile (see package doc).
func TestChaos(t *testing.T) {
	p, explicit := chooseProfile(t)
	need := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if explicit {
			t.Fatal("chaos: " + msg + " (TASKER_CHAOS asks for a run)")
		}
		t.Skip("chaos: skipped: " + msg + " (TASKER_CHAOS=off silences this; TASKER_CHAOS=reduced|full makes it an error)")
	}
	if os.Getenv("TASKER_CHAOS_VERBOSE") == "" {
		tclog.SetDefault(tclog.NewNoopLogger()) // one line per container operation otherwise
	}
	for k, v := range map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1"} {
		if os.Getenv(k) == "" {
			t.Setenv(k, v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.Deadline+5*time.Minute)
	defer cancel()

	cli, err := dockerAvailable(ctx)
	if err != nil {
		need("no Docker engine reachable (%v); the chaos test runs PostgreSQL and the apps in containers", err)
	}
	pgImage := os.Getenv("TASKER_TEST_PG_IMAGE")
	if !strings.HasPrefix(pgImage, "tasker-go/") {
		pgImage = defaultPGImage
	}
	if !imageExists(ctx, cli, pgImage) {
		need("image %s is missing; build it with `make pg-image`", pgImage)
	}
	if p.SilentDrop {
		for _, tool := range []string{"nsenter", "iptables", "ss"} {
			if _, err := exec.LookPath(tool); err != nil {
				msg := fmt.Sprintf("%s is missing (the silent drop fault runs it in an app's network namespace; apt-get install util-linux iptables iproute2)", tool)
				if explicit {
					t.Fatal("chaos: " + msg + " (TASKER_CHAOS asks for a run)")
				}
				t.Logf("chaos: %s: the silent drop is left out of this run", msg)
				p.SilentDrop = false
				break
			}
		}
	}
	appImage := os.Getenv("TASKER_APP_IMAGE")
	if appImage == "" {
		appImage = defaultAppImage
	}
	if os.Getenv("TASKER_CHAOS_SKIP_BUILD") != "1" || !imageExists(ctx, cli, appImage) {
		buildAppImage(t, appImage)
	}
	outDir := os.Getenv("TASKER_CHAOS_OUT")
	if outDir == "" {
		outDir = filepath.Join(os.TempDir(), fmt.Sprintf("tasker-chaos-%s-%s", p.Name, time.Now().Format("20060102-150405")))
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("chaos: profile %s (%d tasks, %d orchestrators, %d workers, %d kills, db restart %v, partition %v, silent drop %v, freeze %v); output in %s",
		p.Name, p.Tasks, p.Orchestrators, p.Workers, p.Kills, p.DBRestart, p.Partition, p.SilentDrop, p.Freeze, outDir)

	cl := newCluster(t, ctx, cli, pgImage, appImage, filepath.Join(outDir, "logs"))
	pool := cl.hostPool(ctx, 20)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := migrations.Up(ctx, pool, quiet); err != nil {
		t.Fatalf("chaos: migrate: %v", err)
	}
	if err := probe.EnsureSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	tmpls, err := template.LoadDir(filepath.Join(repoRoot(), "examples", "templates"))
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.RegisterTemplates(ctx, pool, tmpls); err != nil {
		t.Fatal(err)
	}
	o, err := orchestration.New(orchestration.Config{}, pool, orchestration.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.EnsureQueues(ctx); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, p.Orchestrators+p.Workers)
	for i := 0; i < p.Orchestrators+p.Workers; i++ {
		role := "worker"
		if i < p.Orchestrators {
			role = "orchestrator"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.startApp(ctx, role, p); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		cl.saveLogs(ctx)
		t.Fatal(err)
	}

	r := &run{t: t, p: p, cl: cl, pool: pool, inj: newInjector(pool), sub: &submitter{o: o, pool: pool}, impaired: map[string]bool{}}
	r.specs = makeLoad(p.Tasks, rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)))
	r.started = time.Now()

	runCtx, stopRun := context.WithCancel(ctx)
	var bg sync.WaitGroup
	submitErr := make(chan error, 1)
	bg.Add(4)
	go func() { defer bg.Done(); submitErr <- r.sub.run(runCtx, r.specs, p.SubmitOver) }()
	go func() { defer bg.Done(); r.sampleActivity(runCtx, filepath.Join(outDir, "activity.log")) }()
	go func() {
		defer bg.Done()
		r.inj.duplicates(runCtx, p.Duplicates, max(p.SubmitOver/time.Duration(max(p.Duplicates, 1)), 100*time.Millisecond))
	}()
	driveDone := make(chan struct{})
	go func() { defer bg.Done(); defer close(driveDone); r.drive(runCtx) }()

	finished := r.waitFinal(ctx, p.Deadline, driveDone)
	r.mu.Lock()
	r.finishedAt = time.Now()
	r.mu.Unlock()
	stopRun()
	bg.Wait()
	if err := <-submitErr; err != nil {
		t.Errorf("chaos: submitting tasks: %v", err)
	}
	if finished {
		r.waitQueuesDrained(ctx, 60*time.Second)
	}
	cl.stopApps(ctx)
	r.logs = cl.saveLogs(ctx)

	rep := r.check(ctx, finished)
	rep.write(t, outDir)
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("chaos invariant failed: %s: %s", c.Name, strings.Join(c.Problems, "; "))
		}
	}
}

// progress is the fraction of the load's tasks that are final.
func (r *run) progress(ctx context.Context) (float64, error) {
	var n int
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM tasker.tasks t
		JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
		WHERE tt.to_state IN ('complete', 'blocked_by_failures', 'error', 'cancelled', 'resolved_manually')`).Scan(&n)
	return float64(n) / float64(r.p.Tasks), err
}

// waitFinal waits until every task is final and every fault was injected and healed; false
// when the deadline passed first.
func (r *run) waitFinal(ctx context.Context, within time.Duration, driveDone <-chan struct{}) bool {
	deadline := time.Now().Add(within)
	last := time.Now()
	for time.Now().Before(deadline) {
		pr, err := r.progress(ctx)
		faultsDone := false
		select {
		case <-driveDone:
			faultsDone = true
		default:
		}
		if err == nil && pr >= 1 && int(r.sub.done.Load()) == r.p.Tasks && faultsDone {
			return true
		}
		if time.Since(last) > 15*time.Second {
			if err != nil {
				r.t.Logf("chaos: progress unknown after %s (%v)", time.Since(r.started).Round(time.Second), err)
			} else {
				r.t.Logf("chaos: %.0f%% of tasks final after %s (%d submitted)", 100*pr, time.Since(r.started).Round(time.Second), r.sub.done.Load())
			}
			last = time.Now()
		}
		time.Sleep(time.Second)
	}
	return false
}

// drive fires the planned faults in order, each when enough of the load is final. A partition
// heals in the background while the next faults fire; drive returns once it healed.
func (r *run) drive(ctx context.Context) {
	var healing sync.WaitGroup
	defer healing.Wait()
	for _, pe := range plan(r.p) {
		for {
			pr, err := r.progress(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil && pr >= pe.At {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		pr, _ := r.progress(ctx)
		var err error
		switch pe.Kind {
		case "kill":
			err = r.killWorker(ctx, pr)
		case "db_restart":
			err = r.restartDB(ctx, pr)
		case "partition", "silent_drop", "freeze":
			err = r.impairWorker(ctx, pe.Kind, pr, &healing)
		case "malformed":
			r.inj.malformedRound(ctx)
			r.addEvent(event{Kind: "malformed", At: time.Now(), Progress: pr})
		}
		if err != nil && ctx.Err() == nil {
			r.t.Errorf("chaos: %s: %v", pe.Kind, err)
		}
	}
}

// openInvocations lists the handlers running on a worker that will still be running (sleeping
// before the handler proper) for at least remaining.
func (r *run) openInvocations(ctx context.Context, workerID string, namespacesOnly []string, remaining time.Duration) ([]stepAttempt, error) {
	rows, err := r.pool.Query(ctx, `
		SELECT i.step_uuid, i.attempt, i.step_name FROM chaos.invocations i
		  JOIN tasker.tasks t ON t.task_uuid = i.task_uuid
		  JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
		  JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
		 WHERE i.worker_id = $1 AND i.finished_at IS NULL
		   AND i.started_at + make_interval(secs => i.planned_ms / 1000.0) > clock_timestamp() + make_interval(secs => $3)
		   AND (COALESCE(cardinality($2::text[]), 0) = 0 OR tn.name = ANY($2))`, workerID, namespacesOnly, remaining.Seconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (stepAttempt, error) {
		var s stepAttempt
		err := row.Scan(&s.Step, &s.Attempt, &s.Name)
		return s, err
	})
}

// busiestWorker waits (up to within) for a live, connected worker running handlers (of
// namespacesOnly, when given) that will still run for remaining, and returns the one running
// the most.
func (r *run) busiestWorker(ctx context.Context, within time.Duration, namespacesOnly []string, remaining time.Duration) (*app, []stepAttempt) {
	deadline := time.Now().Add(within)
	var best *app
	var bestOpen []stepAttempt
	for {
		for _, a := range r.cl.live("worker") {
			r.mu.Lock()
			skip := r.impaired[a.Name]
			r.mu.Unlock()
			if skip {
				continue
			}
			open, err := r.openInvocations(ctx, a.WorkerID, namespacesOnly, remaining)
			if err == nil && len(open) > len(bestOpen) {
				best, bestOpen = a, open
			}
		}
		if best != nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if best == nil {
		// Nothing in flight anywhere: any live worker no other fault holds.
		for _, a := range r.cl.live("worker") {
			r.mu.Lock()
			skip := r.impaired[a.Name]
			r.mu.Unlock()
			if !skip {
				return a, nil
			}
		}
	}
	return best, bestOpen
}

// killWorker SIGKILLs the busiest worker mid-handler and starts a replacement.
func (r *run) killWorker(ctx context.Context, pr float64) error {
	victim, open := r.busiestWorker(ctx, 10*time.Second, nil, 300*time.Millisecond)
	if victim == nil {
		return fmt.Errorf("no live worker to kill")
	}
	if all, err := r.openInvocations(ctx, victim.WorkerID, nil, 0); err == nil && len(all) > len(open) {
		open = all
	}
	if err := r.cl.kill(ctx, victim); err != nil {
		return err
	}
	r.addEvent(event{Kind: "kill", At: victim.Killed, Target: victim.Name, WorkerID: victim.WorkerID, InFlight: open, Progress: pr})
	r.t.Logf("chaos: killed %s with %d handlers in flight (%.0f%% final)", victim.Name, len(open), 100*pr)
	a, err := r.cl.startApp(ctx, "worker", r.p)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.replaced++
	r.mu.Unlock()
	r.t.Logf("chaos: started %s to replace %s", a.Name, victim.Name)
	return nil
}

// restartDB crash-restarts PostgreSQL; every app must reconnect by itself.
func (r *run) restartDB(ctx context.Context, pr float64) error {
	killed, back, err := r.cl.restartDB(ctx, 3*time.Second)
	r.addEvent(event{Kind: "db_restart", At: killed, End: back, Target: "postgres", Progress: pr})
	if err == nil {
		r.t.Logf("chaos: PostgreSQL crash-restarted (down %s)", back.Sub(killed).Round(time.Millisecond))
	}
	return err
}

// impairWorker cuts a worker off for PartitionFor, which is longer than the visibility timeout
// and the step timeout + grace, while it runs handlers of steps with the short (worker default)
// timeout; meanwhile its steps are recovered and retried elsewhere, so whatever it completes
// afterwards must be rejected by the claim fence. kind "partition" disconnects it from the
// network (its connections hang; new ones fail); kind "silent_drop" drops its packets without a
// trace and, once lifted, keeps the flows that existed during the drop dead, as a firewall or
// NAT that lost its state does (only new connections work); kind "freeze" pauses its processes
// (its connections stay open, so it sends its completions as soon as it is thawed). The fault is
// lifted in the background while the next faults fire; healing.Done runs some seconds after
// that, once the late completions had time to arrive.
func (r *run) impairWorker(ctx context.Context, kind string, pr float64, healing *sync.WaitGroup) error {
	short := []string{"conditional_approval_rust", "data_processing", "csv_processing_rust"}
	victim, open := r.busiestWorker(ctx, 20*time.Second, short, 1500*time.Millisecond)
	if victim == nil {
		return fmt.Errorf("no live worker to %s", kind)
	}
	r.mu.Lock()
	r.impaired[victim.Name] = true
	r.mu.Unlock()
	impair, lift, verb := r.cl.partition, r.cl.heal, "disconnected %s from the network"
	switch kind {
	case "freeze":
		impair, lift, verb = r.cl.freeze, r.cl.thaw, "froze %s"
	case "silent_drop":
		impair, lift, verb = r.cl.silentDrop, r.cl.liftDrop, "dropping every packet of %s silently"
	}
	if err := impair(ctx, victim); err != nil {
		return err
	}
	start := time.Now()
	r.t.Logf("chaos: "+verb+" with %d short-timeout handlers in flight", victim.Name, len(open))
	healing.Add(1)
	go func() {
		defer healing.Done()
		// The fault lasts its full time even when the load finishes first.
		time.Sleep(r.p.PartitionFor)
		err := lift(context.WithoutCancel(ctx), victim)
		end := time.Now()
		r.mu.Lock()
		delete(r.impaired, victim.Name)
		r.mu.Unlock()
		r.addEvent(event{Kind: kind, At: start, End: end, Target: victim.Name, WorkerID: victim.WorkerID, InFlight: open, Progress: pr})
		if err != nil {
			r.t.Errorf("chaos: lift %s of %s: %v", kind, victim.Name, err)
			return
		}
		r.t.Logf("chaos: %s of %s lifted after %s", kind, victim.Name, end.Sub(start).Round(time.Millisecond))
		time.Sleep(workerVT + 10*time.Second)
	}()
	return nil
}

// sampleActivity writes, every 2s, the committed completions so far and every statement that
// has been running for more than a second (with its wait event), to diagnose stalls.
func (r *run) sampleActivity(ctx context.Context, path string) {
	f, err := os.Create(path)
	if err != nil {
		r.t.Logf("chaos: %v", err)
		return
	}
	defer f.Close()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var ledger, open int
		err := r.pool.QueryRow(qctx, `SELECT (SELECT count(*) FROM chaos.ledger), (SELECT count(*) FROM chaos.invocations WHERE finished_at IS NULL)`).Scan(&ledger, &open)
		fmt.Fprintf(f, "%s completions=%d open_invocations=%d err=%v\n", time.Now().UTC().Format("15:04:05.000"), ledger, open, err)
		var idleTx, lockWait float64
		_ = r.pool.QueryRow(qctx, `SELECT
			COALESCE(max(EXTRACT(EPOCH FROM clock_timestamp() - state_change)) FILTER (WHERE state = 'idle in transaction'), 0),
			COALESCE(max(EXTRACT(EPOCH FROM clock_timestamp() - query_start)) FILTER (WHERE wait_event_type = 'Lock'), 0)
			FROM pg_stat_activity WHERE backend_type = 'client backend'`).Scan(&idleTx, &lockWait)
		r.mu.Lock()
		r.maxIdleTx = max(r.maxIdleTx, time.Duration(idleTx*float64(time.Second)))
		r.maxLockWait = max(r.maxLockWait, time.Duration(lockWait*float64(time.Second)))
		r.mu.Unlock()
		for _, line := range r.strings(qctx, `
			SELECT pid || ' ' || round(EXTRACT(EPOCH FROM clock_timestamp() - query_start)::numeric, 1) || 's ' ||
			       state || ' ' || COALESCE(wait_event_type || ':' || wait_event, '-') || ' ' ||
			       regexp_replace(left(query, 160), '\s+', ' ', 'g')
			  FROM pg_stat_activity
			 WHERE state <> 'idle' AND pid <> pg_backend_pid() AND backend_type = 'client backend'
			   AND clock_timestamp() - query_start > interval '1 second'
			 ORDER BY query_start LIMIT 20`) {
			fmt.Fprintf(f, "    %s\n", line)
		}
		cancel()
	}
}

// waitQueuesDrained waits until the worker and orchestration queues hold no message (duplicates
// left for a step that was in progress become visible again after the visibility timeout).
func (r *run) waitQueuesDrained(ctx context.Context, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		left, err := r.queueLeftovers(ctx)
		if err == nil && len(left) == 0 {
			return
		}
		time.Sleep(time.Second)
	}
}
