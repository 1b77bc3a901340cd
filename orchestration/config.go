package orchestration

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// BackoffConfig is the retry backoff applied to retryable step failures (tasker-core's
// common.backoff): a server-requested Retry-After header wins (capped at Max, no jitter);
// otherwise Base × Multiplier^attempts, capped at Max, ± a random whole number of seconds up to
// JitterPercent of the delay. It applies to steps whose template retry block sets no backoff of
// its own (see templatePolicy); tasker-core ignores the template settings and always uses this.
type BackoffConfig struct {
	Base          time.Duration // default 1s (tasker-core: default_backoff_seconds[0])
	Max           time.Duration // default 3600s
	Multiplier    float64       // default 2.0
	JitterPercent float64       // default 0.15; 0 disables jitter
}

// Config configures an Orchestrator. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// ProcessorUUID identifies this orchestrator in task_transitions.processor_uuid (audit only).
	// Default: a new UUIDv7.
	ProcessorUUID uuid.UUID
	// PollInterval is the fallback poll period of orchestration_step_results; notifications
	// wake the consumer sooner. Default 1s.
	PollInterval time.Duration
	// ReadinessInterval is the period of the readiness sweep (retries whose backoff elapsed,
	// tasks waiting for dependencies). Default 1s.
	ReadinessInterval time.Duration
	// RecoveryInterval is the period of the recovery sweep (dead workers, stuck tasks, results
	// without a message). Default 10s.
	RecoveryInterval time.Duration
	// ResultBatchSize is how many result messages one read takes. Default 20.
	ResultBatchSize int
	// ResultConcurrency bounds how many result messages are processed at once. Results of one
	// task are serialized by its row lock whatever this value is. Default 4.
	ResultConcurrency int
	// SweepBatchSize bounds how many tasks (or steps) one sweep pass handles. Default 100.
	SweepBatchSize int
	// VisibilityTimeout hides a result message that is being processed from other readers.
	// Default 30s.
	VisibilityTimeout time.Duration
	// Backoff configures retry delays.
	Backoff BackoffConfig
	// DefaultStepTimeout is the timeout of a step whose template has no timeout_seconds. It must
	// be at least the workers' TASKER_STEP_TIMEOUT, or live slow steps are recovered (their late
	// results are then rejected by the worker's fence). Default 30s.
	DefaultStepTimeout time.Duration
	// StaleGrace is added to a step's timeout before an in_progress step counts as abandoned by
	// a dead worker. Default 30s.
	StaleGrace time.Duration
	// StuckThreshold is how long a task may sit in pending, initializing, enqueuing_steps or
	// (with nothing in flight) evaluating_results, and how long a step may sit in
	// enqueued_*_for_orchestration without a result message, before the recovery sweep
	// re-evaluates it. Default 2m.
	StuckThreshold time.Duration
	// MaxDecisionSteps caps the steps one decision outcome may name (tasker-core
	// decision_points.max_steps_per_decision). Default 100.
	MaxDecisionSteps int
	// Staleness configures the staleness detection the recovery sweep runs (see dlq.go).
	Staleness StalenessConfig
	// DBTimeout bounds each database call and transaction of the result loop and of one task's
	// advance; a sweep's search query gets four times as long. A call that hits it loses its
	// connection, so a connection a network fault killed silently is replaced. Default 15s.
	DBTimeout time.Duration
}

// DefaultConfig returns tasker-core's defaults with a fresh processor UUID.
func DefaultConfig() Config {
	return Config{}.WithDefaults()
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ProcessorUUID == uuid.Nil {
		c.ProcessorUUID = uuid.Must(uuid.NewV7())
	}
	setDur(&c.PollInterval, time.Second)
	setDur(&c.ReadinessInterval, time.Second)
	setDur(&c.RecoveryInterval, 10*time.Second)
	setInt(&c.ResultBatchSize, 20)
	setInt(&c.ResultConcurrency, 4)
	setInt(&c.SweepBatchSize, 100)
	setDur(&c.VisibilityTimeout, 30*time.Second)
	setDur(&c.Backoff.Base, time.Second)
	setDur(&c.Backoff.Max, 3600*time.Second)
	if c.Backoff.Multiplier == 0 {
		c.Backoff.Multiplier = 2.0
	}
	if c.Backoff.JitterPercent == 0 {
		c.Backoff.JitterPercent = 0.15
	}
	setDur(&c.DefaultStepTimeout, 30*time.Second)
	setDur(&c.StaleGrace, 30*time.Second)
	setDur(&c.StuckThreshold, 2*time.Minute)
	setInt(&c.MaxDecisionSteps, 100)
	setDur(&c.DBTimeout, 15*time.Second)
	c.Staleness = c.Staleness.withDefaults()
	return c
}

// NoJitter is a JitterPercent value that disables jitter (0 means "default" in a Config).
const NoJitter = -1.0

// ConfigError names the setting that is wrong.
type ConfigError struct {
	Field   string
	Message string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("orchestration: config %s: %s", e.Field, e.Message)
}

// Validate reports every invalid setting (after defaults) at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if c.ProcessorUUID == uuid.Nil {
		bad("ProcessorUUID", "required")
	}
	if c.PollInterval < 10*time.Millisecond {
		bad("PollInterval", "%s is below 10ms", c.PollInterval)
	}
	if c.ReadinessInterval < 10*time.Millisecond {
		bad("ReadinessInterval", "%s is below 10ms", c.ReadinessInterval)
	}
	if c.RecoveryInterval < 10*time.Millisecond {
		bad("RecoveryInterval", "%s is below 10ms", c.RecoveryInterval)
	}
	if c.ResultBatchSize < 1 || c.ResultBatchSize > 1000 {
		bad("ResultBatchSize", "%d is outside 1..1000", c.ResultBatchSize)
	}
	if c.ResultConcurrency < 1 || c.ResultConcurrency > 1000 {
		bad("ResultConcurrency", "%d is outside 1..1000", c.ResultConcurrency)
	}
	if c.SweepBatchSize < 1 || c.SweepBatchSize > 10000 {
		bad("SweepBatchSize", "%d is outside 1..10000", c.SweepBatchSize)
	}
	if c.VisibilityTimeout < time.Second {
		bad("VisibilityTimeout", "%s is below 1s", c.VisibilityTimeout)
	}
	if c.Backoff.Base <= 0 {
		bad("Backoff.Base", "must be positive")
	}
	if c.Backoff.Max < c.Backoff.Base {
		bad("Backoff.Max", "%s is below Backoff.Base %s", c.Backoff.Max, c.Backoff.Base)
	}
	if c.Backoff.Max > 7*24*time.Hour {
		bad("Backoff.Max", "%s is above 7 days", c.Backoff.Max)
	}
	if c.Backoff.Multiplier < 1 || c.Backoff.Multiplier > 100 {
		bad("Backoff.Multiplier", "%g is outside 1..100", c.Backoff.Multiplier)
	}
	if c.Backoff.JitterPercent != NoJitter && (c.Backoff.JitterPercent < 0 || c.Backoff.JitterPercent > 1) {
		bad("Backoff.JitterPercent", "%g is outside 0..1", c.Backoff.JitterPercent)
	}
	if c.DefaultStepTimeout <= 0 {
		bad("DefaultStepTimeout", "must be positive")
	}
	if c.StaleGrace < 0 {
		bad("StaleGrace", "must not be negative")
	}
	if c.StuckThreshold <= 0 {
		bad("StuckThreshold", "must be positive")
	}
	if c.MaxDecisionSteps < 1 {
		bad("MaxDecisionSteps", "must be at least 1")
	}
	return errors.Join(errs...)
}

// activeSettle is how long a task must have rested in evaluating_results, steps_in_process or
// pending before the readiness sweep touches it: a Go orchestrator never leaves those states
// mid-work (each step of work is one transaction), but a Rust orchestrator passes through them
// with separate commits, and the sweep must not race its in-flight work.
func (c Config) activeSettle() time.Duration {
	return max(2*c.ReadinessInterval, time.Second)
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}
