package chaos

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/config"
)

// profile is one chaos configuration.
type profile struct {
	Name          string
	Tasks         int           // tasks submitted
	SubmitOver    time.Duration // submission is spread over this long
	Orchestrators int
	Workers       int
	Kills         int           // workers SIGKILLed mid-handler (each replaced by a new one)
	DBRestart     bool          // crash-restart PostgreSQL once
	Partition     bool          // disconnect one worker from the network
	SilentDrop    bool          // drop one worker's packets without a trace; its old flows stay dead
	Freeze        bool          // pause one worker's processes
	PartitionFor  time.Duration // how long a partition, silent drop or freeze lasts
	Duplicates    int           // duplicate step / result messages injected
	Malformed     int           // rounds of malformed messages (one per queue per round)
	Deadline      time.Duration
	SleepMinMS    int
	SleepMaxMS    int
	SlowPermille  int // share (per mille) of handler invocations that sleep SlowMS instead
	SlowMS        int
}

// Timings shared by the containers' configuration (chaosTOML) and the test's expectations.
const (
	stepTimeout   = 8 * time.Second // steps without timeout_seconds (approval, batch)
	staleGrace    = 4 * time.Second
	workerVT      = 5 * time.Second
	recoveryEvery = 2 * time.Second
	concurrency   = 8
)

func reducedProfile() profile {
	return profile{
		// Submission spans the faults, so that every impaired worker has work once its fault
		// is lifted and its time back at work is measured.
		Name: "reduced", Tasks: 300, SubmitOver: 75 * time.Second, Orchestrators: 2, Workers: 4,
		Kills: 1, DBRestart: true, Partition: true, SilentDrop: true, Freeze: true, PartitionFor: 22 * time.Second,
		Duplicates: 40, Malformed: 1, Deadline: 4 * time.Minute, SleepMinMS: 50, SleepMaxMS: 300,
		SlowPermille: 30, SlowMS: 2500,
	}
}

func fullProfile() profile {
	return profile{
		Name: "full", Tasks: 2000, SubmitOver: 90 * time.Second, Orchestrators: 2, Workers: 4,
		Kills: 5, DBRestart: true, Partition: true, SilentDrop: true, Freeze: true, PartitionFor: 22 * time.Second,
		Duplicates: 300, Malformed: 3, Deadline: 20 * time.Minute, SleepMinMS: 50, SleepMaxMS: 300,
		SlowPermille: 30, SlowMS: 2500,
	}
}

// chooseProfile reads TASKER_CHAOS (and TASKER_CHAOS_TASKS, which overrides the task count and
// scales the submission period). explicit reports whether the caller asked for a run (then
// missing prerequisites fail the test instead of skipping it).
func chooseProfile(t *testing.T) (p profile, explicit bool) {
	t.Helper()
	p, explicit = baseProfile(t)
	if v := os.Getenv("TASKER_CHAOS_TASKS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("chaos: TASKER_CHAOS_TASKS=%q: want a number of at least 10", v)
		}
		p.SubmitOver = time.Duration(float64(p.SubmitOver) * float64(n) / float64(p.Tasks))
		p.Tasks = n
	}
	return p, explicit
}

func baseProfile(t *testing.T) (p profile, explicit bool) {
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv("TASKER_CHAOS"))); v {
	case "full":
		return fullProfile(), true
	case "reduced":
		return reducedProfile(), true
	case "":
		if testing.Short() {
			t.Skip("chaos: skipped in -short mode (set TASKER_CHAOS=reduced or full to run it)")
		}
		return reducedProfile(), false
	case "off", "0", "no", "false":
		t.Skip("chaos: TASKER_CHAOS=" + v)
	default:
		t.Fatalf("chaos: TASKER_CHAOS=%q: want full, reduced or off", v)
	}
	return profile{}, false
}

// chaosTOML is the configuration file every app container reads (TASKER_CONFIG_PATH): short
// timeouts so that recovery happens within the run, and no HTTP servers.
func chaosTOML() string {
	return fmt.Sprintf(`# tasker-go chaos test configuration (generated)
[common.backoff]
default_backoff_seconds = [1]
max_backoff_seconds = 4
backoff_multiplier = 2.0
jitter_enabled = true
jitter_max_percentage = 0.15

[worker]
stale_grace_seconds = %d
shutdown_timeout_ms = 5000

[worker.event_systems.worker.timing]
visibility_timeout_seconds = %d
fallback_polling_interval_ms = 500

[worker.event_systems.worker.processing]
batch_size = %d

[worker.mpsc_channels.handler_dispatch]
max_concurrent_handlers = %d
handler_timeout_ms = %d

[worker.web]
enabled = false

[orchestration]
result_concurrency = 4
recovery_interval_seconds = %d
sweep_batch_size = 100
stale_grace_seconds = %d
stuck_threshold_seconds = 20

[orchestration.event_systems.orchestration.timing]
fallback_polling_interval_seconds = 0.5
visibility_timeout_seconds = 10

[orchestration.event_systems.orchestration.processing]
batch_size = 20

[orchestration.event_systems.task_readiness.timing]
fallback_polling_interval_seconds = 0.5

[orchestration.web]
enabled = false
`, int(staleGrace.Seconds()), int(workerVT.Seconds()), concurrency, concurrency, stepTimeout.Milliseconds(),
		int(recoveryEvery.Seconds()), int(staleGrace.Seconds()))
}

// TestChaosConfigLoads checks that the generated file is valid for config.Load and means what
// the test assumes (it needs no Docker).
func TestChaosConfigLoads(t *testing.T) {
	path := t.TempDir() + "/chaos.toml"
	if err := os.WriteFile(path, []byte(chaosTOML()), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": "postgres://postgres@postgres:5432/postgres?sslmode=disable"}
	cfg, err := config.Load(config.Options{Path: path, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	w, o := cfg.Worker, cfg.Orchestration
	if w.StepTimeout != stepTimeout || w.StaleGrace != staleGrace || w.VisibilityTimeout != workerVT ||
		w.Concurrency != concurrency || w.BatchSize != concurrency || w.PollInterval != 500*time.Millisecond {
		t.Errorf("worker config = %+v", w)
	}
	if o.StaleGrace != staleGrace || o.RecoveryInterval != recoveryEvery || o.PollInterval != 500*time.Millisecond ||
		o.ReadinessInterval != 500*time.Millisecond || o.StuckThreshold != 20*time.Second || o.Backoff.Max != 4*time.Second {
		t.Errorf("orchestration config = %+v", o)
	}
	if cfg.WorkerWeb.Enabled || cfg.OrchestrationWeb.Enabled {
		t.Errorf("web servers enabled: worker %v orchestration %v", cfg.WorkerWeb.Enabled, cfg.OrchestrationWeb.Enabled)
	}
}
