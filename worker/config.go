package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/queue"
)

// Config holds everything a Worker needs besides its handler registry and database pool.
// Where to connect and which templates to register are the caller's: config.Load reads them
// (DATABASE_URL, TASKER_TEMPLATE_PATH, TASKER_DB_MAX_CONNS) along with these settings.
type Config struct {
	// Namespaces are the task namespaces whose worker_<ns>_queue this worker consumes
	// (TASKER_NAMESPACES, comma separated). Empty means: the namespaces of the loaded templates.
	Namespaces []string
	// Concurrency bounds how many handlers run at once (TASKER_CONCURRENCY, default 10).
	Concurrency int
	// BatchSize caps how many messages one read fetches (TASKER_BATCH_SIZE, default 10).
	BatchSize int
	// PollInterval is the fallback poll period; notifications wake the worker sooner
	// (TASKER_POLL_INTERVAL, default 500ms, as tasker-core's worker).
	PollInterval time.Duration
	// VisibilityTimeout is the PGMQ visibility timeout set when a message is read; it is
	// extended while the handler runs (TASKER_VISIBILITY_TIMEOUT, default 30s).
	VisibilityTimeout time.Duration
	// StepTimeout applies to steps whose template gives no timeout_seconds
	// (TASKER_STEP_TIMEOUT, default 30s, as tasker-core's handler dispatch).
	StepTimeout time.Duration
	// StaleGrace is added to a step's timeout before a step left in_progress by another
	// worker is considered abandoned (TASKER_STALE_GRACE, default 30s).
	StaleGrace time.Duration
	// ShutdownTimeout bounds how long in-flight handlers may drain on shutdown
	// (TASKER_SHUTDOWN_TIMEOUT, default 30s).
	ShutdownTimeout time.Duration
	// WorkerID identifies this process in results and transition metadata; it is
	// "worker_<uuid v7>" unless TASKER_WORKER_ID gives one (its uuid part is the worker uuid).
	WorkerID string
	// DBTimeout bounds every database call of the worker's loops: a read, a claim, a
	// completion, a heartbeat, a checkpoint (TASKER_DB_CALL_TIMEOUT, default 15s). A call that
	// hits it loses its connection, so a connection a network fault killed silently is
	// replaced instead of blocking the loop.
	DBTimeout time.Duration
}

// DefaultConfig returns a Config with tasker-core's defaults and a fresh worker id.
func DefaultConfig() Config {
	return Config{
		Concurrency:       10,
		BatchSize:         10,
		PollInterval:      500 * time.Millisecond,
		VisibilityTimeout: 30 * time.Second,
		StepTimeout:       30 * time.Second,
		StaleGrace:        30 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		DBTimeout:         15 * time.Second,
		WorkerID:          "worker_" + uuid.Must(uuid.NewV7()).String(),
	}
}

// ConfigError names the setting that is wrong.
type ConfigError struct {
	Key     string
	Message string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("config %s: %s", e.Key, e.Message) }

// FromEnv overlays the environment variables named in the Config field docs on c.
func (c Config) FromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	str := func(key string, dst *string) {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			*dst = v
		}
	}
	num := func(key string, dst *int) {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, &ConfigError{key, fmt.Sprintf("%q is not a whole number", v)})
				return
			}
			*dst = n
		}
	}
	dur := func(key string, dst *time.Duration) {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			d, err := parseDuration(v)
			if err != nil {
				errs = append(errs, &ConfigError{key, err.Error()})
				return
			}
			*dst = d
		}
	}
	str("TASKER_WORKER_ID", &c.WorkerID)
	if v := strings.TrimSpace(getenv("TASKER_NAMESPACES")); v != "" {
		c.Namespaces = splitList(v)
	}
	num("TASKER_CONCURRENCY", &c.Concurrency)
	num("TASKER_BATCH_SIZE", &c.BatchSize)
	dur("TASKER_POLL_INTERVAL", &c.PollInterval)
	dur("TASKER_VISIBILITY_TIMEOUT", &c.VisibilityTimeout)
	dur("TASKER_STEP_TIMEOUT", &c.StepTimeout)
	dur("TASKER_STALE_GRACE", &c.StaleGrace)
	dur("TASKER_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	dur("TASKER_DB_CALL_TIMEOUT", &c.DBTimeout)
	return c, errors.Join(errs...)
}

// Validate reports every invalid setting at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, &ConfigError{key, msg}) }
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		bad("TASKER_CONCURRENCY", fmt.Sprintf("%d is outside 1..10000", c.Concurrency))
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		bad("TASKER_BATCH_SIZE", fmt.Sprintf("%d is outside 1..1000", c.BatchSize))
	}
	if c.PollInterval < 10*time.Millisecond {
		bad("TASKER_POLL_INTERVAL", "must be at least 10ms")
	}
	if c.VisibilityTimeout < time.Second {
		bad("TASKER_VISIBILITY_TIMEOUT", "must be at least 1s")
	}
	if c.StepTimeout <= 0 {
		bad("TASKER_STEP_TIMEOUT", "must be positive")
	}
	if c.StaleGrace < 0 {
		bad("TASKER_STALE_GRACE", "must not be negative")
	}
	if c.ShutdownTimeout < 0 {
		bad("TASKER_SHUTDOWN_TIMEOUT", "must not be negative")
	}
	if c.DBTimeout < 100*time.Millisecond {
		bad("TASKER_DB_CALL_TIMEOUT", "must be at least 100ms")
	}
	if _, err := WorkerUUID(c.WorkerID); err != nil {
		bad("TASKER_WORKER_ID", err.Error())
	}
	for _, ns := range c.Namespaces {
		if queue.ValidateNamespace(ns) != nil {
			bad("TASKER_NAMESPACES", fmt.Sprintf("%q: namespaces are 1-29 characters of [A-Za-z0-9_]", ns))
		}
	}
	if err := queue.ValidateNamespaces(c.Namespaces); errors.Is(err, queue.ErrNameConflict) {
		bad("TASKER_NAMESPACES", err.Error())
	}
	return errors.Join(errs...)
}

// WorkerUUID extracts the uuid from a worker id of the form "worker_<uuid>" (or a bare uuid),
// the value tasker-core records as worker_uuid in transition metadata.
func WorkerUUID(workerID string) (uuid.UUID, error) {
	id, err := uuid.Parse(strings.TrimPrefix(workerID, "worker_"))
	if err != nil {
		return uuid.Nil, fmt.Errorf("worker id %q is not worker_<uuid>", workerID)
	}
	return id, nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseDuration accepts Go durations ("500ms", "30s") and bare numbers of seconds ("30").
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 500ms, 30s, or seconds as a number)", v)
	}
	return d, nil
}
