package orchestration

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/state"
)

// StalenessConfig is tasker-core's orchestration.dlq.staleness_detection: a task resting in
// waiting_for_dependencies, waiting_for_retry or steps_in_process past its threshold (the
// template's lifecycle.max_*_minutes, else the default here), or older than TaskMaxLifetime,
// gets a DLQ entry (reason staleness_timeout) and is moved to error.
type StalenessConfig struct {
	// Disabled turns staleness detection off (tasker-core: enabled = false).
	Disabled bool
	// DryRun only reports the stale tasks.
	DryRun bool
	// BatchSize bounds the tasks one pass handles. Default 100.
	BatchSize int
	// Default thresholds: 60m, 30m, 30m; TaskMaxLifetime 24h. Whole minutes (hours) count.
	WaitingForDependencies time.Duration
	WaitingForRetry        time.Duration
	StepsInProcess         time.Duration
	TaskMaxLifetime        time.Duration
}

func (c StalenessConfig) withDefaults() StalenessConfig {
	setInt(&c.BatchSize, 100)
	setDur(&c.WaitingForDependencies, 60*time.Minute)
	setDur(&c.WaitingForRetry, 30*time.Minute)
	setDur(&c.StepsInProcess, 30*time.Minute)
	setDur(&c.TaskMaxLifetime, 24*time.Hour)
	return c
}

// validate rejects thresholds that would make every task stale at once.
func (c StalenessConfig) validate() error {
	for _, f := range []struct {
		name     string
		d, least time.Duration
	}{
		{"Staleness.WaitingForDependencies", c.WaitingForDependencies, time.Minute},
		{"Staleness.WaitingForRetry", c.WaitingForRetry, time.Minute},
		{"Staleness.StepsInProcess", c.StepsInProcess, time.Minute},
		{"Staleness.TaskMaxLifetime", c.TaskMaxLifetime, time.Hour},
	} {
		if f.d < f.least {
			return &ConfigError{Field: f.name, Message: fmt.Sprintf("%s is below %s", f.d, f.least)}
		}
	}
	if c.BatchSize < 1 {
		return &ConfigError{Field: "Staleness.BatchSize", Message: fmt.Sprintf("%d is below 1", c.BatchSize)}
	}
	return nil
}

// Staleness actions, as tasker-core's detect_and_transition_stale_tasks reports them.
const (
	StaleWouldTransition  = "would_transition_to_dlq_and_error"
	StaleTransitioned     = "transitioned_to_dlq_and_error"
	StaleMovedToDLQOnly   = "moved_to_dlq_only"
	StaleTransitionedOnly = "transitioned_to_error_only"
	StaleTransitionFailed = "transition_failed"
)

// StaleTask is one task the staleness detection found and what it did with it.
type StaleTask struct {
	TaskUUID           uuid.UUID
	Namespace          string
	TaskName           string
	State              string
	TimeInStateMinutes int32
	ThresholdMinutes   int32
	// DLQEntry is the entry created (nil when none was: dry run, or the task already had one).
	DLQEntry *uuid.UUID
	// MovedToError says the task was moved to error.
	MovedToError bool
	// Action is one of the Stale* constants.
	Action string
}

// staleTasksSQL returns what tasker.get_stale_tasks_for_dlq($1..$5) returns, found from
// indexes instead of every incomplete task: a task can be stale only if it entered its state at
// least the smallest threshold of that state over all templates ago
// (idx_task_transitions_sweep_waiting), or was created TaskMaxLifetime ago
// (idx_tasks_sweep_active_created_at). Each candidate then passes the function's own conditions.
const staleTasksSQL = `
WITH low AS MATERIALIZED (
    SELECT min(tasker.calculate_staleness_threshold('waiting_for_dependencies', nt.configuration, $1, $2, $3)) AS deps,
           min(tasker.calculate_staleness_threshold('waiting_for_retry', nt.configuration, $1, $2, $3)) AS retry,
           min(tasker.calculate_staleness_threshold('steps_in_process', nt.configuration, $1, $2, $3)) AS steps
      FROM tasker.named_tasks nt
)
SELECT a.task_uuid, a.namespace_name, a.task_name, a.current_state,
       floor(a.time_in_state_minutes)::integer, a.threshold
  FROM (SELECT tt.task_uuid
          FROM tasker.task_transitions tt
         WHERE tt.most_recent AND tt.to_state = 'waiting_for_dependencies'
           AND tt.created_at <= now() - make_interval(mins => (SELECT deps FROM low))
        UNION
        SELECT tt.task_uuid
          FROM tasker.task_transitions tt
         WHERE tt.most_recent AND tt.to_state = 'waiting_for_retry'
           AND tt.created_at <= now() - make_interval(mins => (SELECT retry FROM low))
        UNION
        SELECT tt.task_uuid
          FROM tasker.task_transitions tt
         WHERE tt.most_recent AND tt.to_state = 'steps_in_process'
           AND tt.created_at <= now() - make_interval(mins => (SELECT steps FROM low))
        UNION
        SELECT t.task_uuid
          FROM tasker.tasks t
         WHERE NOT t.complete AND t.created_at <= now() - make_interval(hours => $4)) c
 CROSS JOIN LATERAL (
       SELECT a.task_uuid, a.namespace_name, a.task_name, a.current_state, a.time_in_state_minutes, th.minutes AS threshold
         FROM tasker.v_task_state_analysis a
        CROSS JOIN LATERAL (
              SELECT tasker.calculate_staleness_threshold(a.current_state, a.template_config, $1, $2, $3) AS minutes
              ) th
        WHERE a.task_uuid = c.task_uuid
          AND a.current_state IN ('waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process')
          AND NOT EXISTS (SELECT 1 FROM tasker.tasks_dlq d
                           WHERE d.task_uuid = a.task_uuid AND d.resolution_status = 'pending')
          AND (a.time_in_state_minutes >= th.minutes
               OR a.task_age_minutes >= $4 * 60)
       OFFSET 0) a
 ORDER BY a.time_in_state_minutes DESC
 LIMIT $5`

// DetectStaleTasks runs one pass of tasker-core's staleness detection with cfg (after
// defaults): it finds the stale tasks tasker.get_stale_tasks_for_dlq finds and, unless
// cfg.DryRun, for each one locks the task (skipping it if another transaction holds it or its
// state changed since), opens a DLQ entry with tasker.create_dlq_entry and moves it to error with
// tasker.transition_stale_task_to_error, in one transaction per task. It returns what it did;
// tasks skipped because they were busy or moved on are left out.
func (o *Orchestrator) DetectStaleTasks(ctx context.Context, cfg StalenessConfig) ([]StaleTask, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var cands []StaleTask
	err := o.sweepSearch(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		cands, err = collect(ctx, tx, func(r pgx.CollectableRow) (StaleTask, error) {
			var s StaleTask
			err := r.Scan(&s.TaskUUID, &s.Namespace, &s.TaskName, &s.State, &s.TimeInStateMinutes, &s.ThresholdMinutes)
			return s, err
		}, staleTasksSQL,
			int32(cfg.WaitingForDependencies/time.Minute), int32(cfg.WaitingForRetry/time.Minute),
			int32(cfg.StepsInProcess/time.Minute), int32(cfg.TaskMaxLifetime/time.Hour), int32(cfg.BatchSize))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("orchestration: find stale tasks: %w", err)
	}
	var out []StaleTask
	for _, c := range cands {
		if ctx.Err() != nil {
			break
		}
		if cfg.DryRun {
			c.Action = StaleWouldTransition
			out = append(out, c)
			continue
		}
		if err := o.moveStaleTask(ctx, &c); err != nil {
			o.log.Error("staleness: task not moved to the DLQ", "task_uuid", c.TaskUUID, "error", err)
			continue
		}
		if c.Action == "" { // busy, finished or moved on since it was found
			continue
		}
		o.log.Warn("stale task moved to the DLQ", "task_uuid", c.TaskUUID, "namespace", c.Namespace,
			"task_name", c.TaskName, "state", c.State, "minutes_in_state", c.TimeInStateMinutes,
			"threshold_minutes", c.ThresholdMinutes, "action", c.Action)
		out = append(out, c)
	}
	return out, nil
}

// moveStaleTask opens the DLQ entry and moves the task to error in one transaction holding the
// task lock; it sets c's outcome (Action empty: skipped).
func (o *Orchestrator) moveStaleTask(ctx context.Context, c *StaleTask) error {
	wctx, cancel := o.dbCtx(ctx)
	defer cancel()
	tx, err := o.begin(wctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(wctx) //nolint:errcheck // no-op after commit
	task, err := lockTask(wctx, tx, c.TaskUUID, true)
	if err != nil || task == nil || task.Complete || string(task.Head.State) != c.State {
		return err
	}
	if err := tx.QueryRow(wctx, `SELECT tasker.create_dlq_entry($1, $2, $3, $4, $5, $6, 'staleness_timeout')`,
		c.TaskUUID, c.Namespace, c.TaskName, c.State, c.TimeInStateMinutes, c.ThresholdMinutes).Scan(&c.DLQEntry); err != nil {
		return fmt.Errorf("orchestration: create DLQ entry: %w", err)
	}
	if err := tx.QueryRow(wctx, `SELECT COALESCE(tasker.transition_stale_task_to_error($1, $2, $3, $4), false)`,
		c.TaskUUID, c.State, c.Namespace, c.TaskName).Scan(&c.MovedToError); err != nil {
		return fmt.Errorf("orchestration: move stale task to error: %w", err)
	}
	if err := tx.Commit(wctx); err != nil {
		return err
	}
	if c.MovedToError {
		o.metrics.countFinalized(state.TaskError)
	}
	switch {
	case c.DLQEntry != nil && c.MovedToError:
		c.Action = StaleTransitioned
	case c.DLQEntry != nil:
		c.Action = StaleMovedToDLQOnly
	case c.MovedToError:
		c.Action = StaleTransitionedOnly
	default:
		c.Action = StaleTransitionFailed
	}
	return nil
}

// staleSweep is the recovery sweep's staleness pass with the orchestrator's configuration.
func (o *Orchestrator) staleSweep(ctx context.Context) error {
	if o.cfg.Staleness.Disabled {
		return nil
	}
	_, err := o.DetectStaleTasks(ctx, o.cfg.Staleness)
	return err
}
