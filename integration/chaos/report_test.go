package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// report is what a chaos run found; it is written as Markdown (for the README) and JSON.
type report struct {
	Profile  profile
	Started  time.Time
	Duration time.Duration

	Tasks         int
	TasksByKind   map[string]int
	TasksByState  map[string]int
	Steps         int
	StepsComplete int

	Executions           int // handler invocations recorded
	ExecutionsUnfinished int // invocations without a recorded end (killed, partitioned, DB down)
	ExecutionsDiscarded  int // invocations whose result never committed
	LedgerRows           int // committed completions (success or failure)
	EffectsApplied       int // committed successful completions

	Kills, Replacements, DBRestarts, Partitions, SilentDrops, Freezes int
	Injected                                                          map[string]int
	ArchiveReasons                                                    map[string]int
	InjectErrors                                                      int
	SubmitRetries                                                     int64

	RecoveredSteps, RecoveredByOrchestrator, RecoveredByWorker int
	Logs                                                       logFigures
	Recovery                                                   []recoveryFigure
	MaxRecovery                                                time.Duration
	MaxIdleInTransaction, MaxLockWait                          time.Duration
	Events                                                     []event
	Checks                                                     []checkResult
}

// recoveryFigure is the recovery of one fault.
type recoveryFigure struct {
	Event    string
	InFlight int           // handlers running on the target
	Steps    int           // of them, steps whose effect another worker applied (-1: n/a)
	Max      time.Duration // kill/partition: slowest of those; db_restart: until the first commit after the crash
	Down     time.Duration // db_restart: crash until the server answered
	Slowest  time.Duration // db_restart: slowest step interrupted by the crash
	Late     int           // partition/freeze: completions the target sent later, rejected (-1: n/a)
	// Back is how long after the fault ended the target (db_restart: the slowest surviving
	// app, BackApp) first logged progress or resumed reads; -1 when it logged neither.
	Back    time.Duration
	BackApp string
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := rep.Profile
	ok := 0
	for _, c := range rep.Checks {
		if c.OK {
			ok++
		}
	}
	fmt.Fprintf(&b, "### Chaos run: %s profile, %s\n\n", p.Name, rep.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "PostgreSQL 15, %d orchestrators, %d workers (concurrency %d; handlers sleep %d-%d ms, %.1f%% of them %d ms) on a private Docker network; "+
		"visibility timeout %s, step timeout %s (30s for the linear and diamond templates), stale grace %s; %s from the first task to the last final one.\n\n",
		p.Orchestrators, p.Workers, concurrency, p.SleepMinMS, p.SleepMaxMS, float64(p.SlowPermille)/10, p.SlowMS,
		workerVT, stepTimeout, staleGrace, rep.Duration)
	fmt.Fprintf(&b, "| Figure | Value |\n|---|---|\n")
	row := func(k string, v any) { fmt.Fprintf(&b, "| %s | %v |\n", k, v) }
	row("tasks", fmt.Sprintf("%d (%s)", rep.Tasks, kv(rep.TasksByKind)))
	row("final task states", kv(rep.TasksByState))
	row("steps (complete)", fmt.Sprintf("%d (%d)", rep.Steps, rep.StepsComplete))
	row("handler executions / effects applied", fmt.Sprintf("%d / %d (%d executions without a committed result, %d committed failures)",
		rep.Executions, rep.EffectsApplied, rep.ExecutionsDiscarded, rep.LedgerRows-rep.EffectsApplied))
	row("workers SIGKILLed mid-handler (replaced)", fmt.Sprintf("%d (%d)", rep.Kills, rep.Replacements))
	row("PostgreSQL crash-restarts", rep.DBRestarts)
	row("network partitions / silent drops / process freezes", fmt.Sprintf("%d / %d / %d (%s each)", rep.Partitions, rep.SilentDrops, rep.Freezes, p.PartitionFor))
	row("duplicates injected", fmt.Sprintf("%d step messages, %d result messages", rep.Injected["duplicate_step"], rep.Injected["duplicate_result"]))
	row("malformed / unknown-step / mismatched messages injected", fmt.Sprintf("%d / %d / %d", rep.Injected["malformed"], rep.Injected["unknown_step"], rep.Injected["task_mismatch"]))
	row("recovered steps (abandoned in_progress)", fmt.Sprintf("%d (%d by an orchestrator, %d by a worker)", rep.RecoveredSteps, rep.RecoveredByOrchestrator, rep.RecoveredByWorker))
	row("late completions rejected by the fence", rep.Logs.LateRejected)
	row("completions that failed to commit (DB down/unreachable)", rep.Logs.CompletionFailures)
	row("max recovery time", rep.MaxRecovery)
	row("longest idle-in-transaction session / lock wait seen", fmt.Sprintf("%s / %s", rep.MaxIdleInTransaction, rep.MaxLockWait))
	row("task submissions retried (DB down)", rep.SubmitRetries)
	fmt.Fprintf(&b, "\n| Fault | Handlers in flight | Applied by another worker | Recovery | Late completions rejected | Back at work after the fault ended |\n|---|---|---|---|---|---|\n")
	back := func(f recoveryFigure) string {
		switch {
		case f.Back < 0:
			return "-"
		case f.BackApp != "":
			return fmt.Sprintf("%s (slowest: %s)", f.Back, f.BackApp)
		}
		return f.Back.String()
	}
	for _, f := range rep.Recovery {
		if f.Event == "db_restart" {
			fmt.Fprintf(&b, "| db_restart (down %s) | - | - | first commit %s after the crash; slowest interrupted step %s | - | %s |\n", f.Down, f.Max, f.Slowest, back(f))
			continue
		}
		late := "-"
		if f.Late >= 0 {
			late = fmt.Sprint(f.Late)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s |\n", f.Event, f.InFlight, f.Steps, f.Max, late, back(f))
	}
	fmt.Fprintf(&b, "\nInvariants: %d of %d hold.\n\n", ok, len(rep.Checks))
	for _, c := range rep.Checks {
		mark := "PASS"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "- %s: %s\n", mark, c.Name)
		for _, pr := range c.Problems {
			fmt.Fprintf(&b, "  - %s\n", pr)
		}
	}
	if len(rep.ArchiveReasons) > 0 {
		fmt.Fprintf(&b, "\nInjected messages, by archive reason: %s\n", kv(rep.ArchiveReasons))
	}
	if len(rep.Logs.Samples) > 0 {
		fmt.Fprintf(&b, "\nERROR log lines by app: %s. By kind (app role, message, normalized error):\n", kv(rep.Logs.ErrorsByApp))
		for _, s := range rep.Logs.Samples {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	return b.String()
}

func kv[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %v", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// write logs the report and saves report.md and report.json in dir.
func (rep *report) write(t *testing.T, dir string) {
	md := rep.markdown()
	t.Log("\n" + md)
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(md), 0o644); err != nil {
		t.Errorf("chaos: write report: %v", err)
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "report.json"), js, 0o644); err != nil {
		t.Errorf("chaos: write report: %v", err)
	}
	t.Logf("chaos: report written to %s", filepath.Join(dir, "report.md"))
}
