package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/worker"
)

const testDB = "postgres://u@db:5432/tasker"

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeTOML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tasker.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// errorTexts returns the text of every joined error, each checked to be an *Error.
func errorTexts(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error")
	}
	var out []string
	for _, e := range flatten(err) {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %v (%T) is not a *config.Error", e, e)
		}
		out = append(out, e.Error())
	}
	return out
}

func containsText(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func TestConfigDefaultsWithoutFile(t *testing.T) {
	c, err := Load(Options{Getenv: envOf(map[string]string{"DATABASE_URL": testDB})})
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	c.Worker.WorkerID, def.Worker.WorkerID = "", ""
	def.Database.URL = testDB
	if !reflect.DeepEqual(c.Worker, def.Worker) || c.WorkerWeb != def.WorkerWeb || c.Telemetry != def.Telemetry ||
		c.Orchestration != def.Orchestration || c.OrchestrationWeb != def.OrchestrationWeb || c.Database != def.Database {
		t.Fatalf("loaded %+v\nwant %+v", c, def)
	}
	if c.File != "" || c.Source("common.database.url") != "DATABASE_URL" || c.Source("worker.web.enabled") != "default" {
		t.Fatalf("file %q, sources %v", c.File, c.sources)
	}
	if def.Worker.Concurrency != 10 || def.Worker.PollInterval != 500*time.Millisecond || def.WorkerWeb.BindAddress != "0.0.0.0:8081" ||
		def.Orchestration.Backoff.Max != time.Hour || def.Telemetry.Enabled || def.Orchestration.ProcessorUUID != uuid.Nil {
		t.Fatalf("defaults changed: %+v", def)
	}
}

func TestConfigMissingDatabaseURL(t *testing.T) {
	_, err := Load(Options{Getenv: envOf(nil)})
	if texts := errorTexts(t, err); !containsText(texts, "config: common.database.url: required") {
		t.Fatalf("errors = %q", texts)
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := writeTOML(t, `
[common.database]
url = "postgres://file/db"

[worker]
namespaces = ["billing", "shipping"]
shutdown_timeout_ms = 1500

[worker.event_systems.worker.timing]
fallback_polling_interval_ms = 250
visibility_timeout_seconds = 45

[worker.event_systems.worker.processing]
batch_size = 7

[worker.mpsc_channels.handler_dispatch]
max_concurrent_handlers = 5
handler_timeout_ms = 12000

[worker.web]
bind_address = "127.0.0.1:9000"
`)
	env := map[string]string{
		"TASKER_CONFIG_PATH":      path,
		"TASKER_CONCURRENCY":      "8",
		"TASKER_WEB_BIND_ADDRESS": "127.0.0.1:9100",
		"TASKER_STEP_TIMEOUT":     "20s",
	}
	c, err := Load(Options{Getenv: envOf(env), Apply: func(c *Config) error {
		c.Worker.BatchSize = 9                  // a flag beats the file
		c.Worker.StepTimeout = 40 * time.Second // and the environment
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	w := c.Worker
	if c.Database.URL != "postgres://file/db" || !reflect.DeepEqual(w.Namespaces, []string{"billing", "shipping"}) ||
		w.PollInterval != 250*time.Millisecond || w.VisibilityTimeout != 45*time.Second || w.ShutdownTimeout != 1500*time.Millisecond {
		t.Fatalf("file values not applied: %+v", w)
	}
	if w.Concurrency != 8 || c.WorkerWeb.BindAddress != "127.0.0.1:9100" {
		t.Fatalf("environment did not beat the file: concurrency %d, bind %s", w.Concurrency, c.WorkerWeb.BindAddress)
	}
	if w.BatchSize != 9 || w.StepTimeout != 40*time.Second {
		t.Fatalf("flags did not win: batch %d, step timeout %s", w.BatchSize, w.StepTimeout)
	}
	if c.File != path {
		t.Fatalf("File = %q", c.File)
	}
	for key, want := range map[string]string{
		"worker.mpsc_channels.handler_dispatch.max_concurrent_handlers":   "TASKER_CONCURRENCY",
		"worker.event_systems.worker.processing.batch_size":               "flag",
		"worker.mpsc_channels.handler_dispatch.handler_timeout_ms":        "flag",
		"worker.event_systems.worker.timing.fallback_polling_interval_ms": "file",
		"worker.stale_grace_seconds":                                      "default",
	} {
		if got := c.Source(key); got != want {
			t.Errorf("Source(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestConfigPathOptionBeatsEnvironment(t *testing.T) {
	a := writeTOML(t, "[worker.mpsc_channels.handler_dispatch]\nmax_concurrent_handlers = 3\n")
	b := writeTOML(t, "[worker.mpsc_channels.handler_dispatch]\nmax_concurrent_handlers = 4\n")
	c, err := Load(Options{Path: a, Getenv: envOf(map[string]string{"TASKER_CONFIG_PATH": b, "DATABASE_URL": testDB})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.Concurrency != 3 || c.File != a {
		t.Fatalf("concurrency %d from %s; want 3 from --config", c.Worker.Concurrency, c.File)
	}
	_, err = Load(Options{Path: filepath.Join(t.TempDir(), "missing.toml"), Getenv: envOf(nil)})
	if texts := errorTexts(t, err); !strings.HasPrefix(texts[0], "config: --config: open ") {
		t.Fatalf("missing file: %q", texts)
	}
}

func TestConfigUnknownKeys(t *testing.T) {
	path := writeTOML(t, `
[common.database]
url = "postgres://x/y"

[worker.mpsc_channels.handler_dispatch]
max_concurrent_handler = 5
dispatch_buffer_size = 100

[worker.grpc]
enabled = true
port = 1

[worker.grcp]
enabled = true
port = 1

[worker]
web = 3
`)
	c, err := Load(Options{Path: path, Getenv: envOf(nil)})
	texts := errorTexts(t, err)
	for _, want := range []string{
		"config: worker.mpsc_channels.handler_dispatch.max_concurrent_handler: unknown key (did you mean worker.mpsc_channels.handler_dispatch.max_concurrent_handlers?)",
		"config: worker.grcp: unknown table (did you mean worker.grpc?)",
		"config: worker.web: is a table, not a value",
	} {
		if !containsText(texts, want) {
			t.Errorf("missing %q in %q", want, texts)
		}
	}
	if len(texts) != 3 {
		t.Errorf("an unknown table's keys must not be reported again: %q", texts)
	}
	// tasker-core's keys (and unknown keys in its sections tasker-go does not use) are ignored.
	want := []string{"worker.grpc.*", "worker.mpsc_channels.handler_dispatch.dispatch_buffer_size"}
	if !reflect.DeepEqual(c.Ignored, want) {
		t.Errorf("Ignored = %q, want %q", c.Ignored, want)
	}
}

func TestConfigKeyUsedAsTable(t *testing.T) {
	path := writeTOML(t, "[worker.worker_id]\nvalue = \"x\"\n")
	_, err := Load(Options{Path: path, Getenv: envOf(map[string]string{"DATABASE_URL": testDB})})
	if texts := errorTexts(t, err); !containsText(texts, "config: worker.worker_id: expected a value, got a table") || len(texts) != 1 {
		t.Fatalf("errors = %q", texts)
	}
}

func TestConfigBadValues(t *testing.T) {
	path := writeTOML(t, `
[common.database]
url = "postgres://x/y"
pool = { max_connections = "lots" }

[common.backoff]
default_backoff_seconds = []
backoff_multiplier = 0.5
jitter_max_percentage = 2.0

[worker]
worker_id = "worker_default-001"
namespaces = ["ok", "not-ok"]
stale_grace_seconds = -1

[worker.mpsc_channels.handler_dispatch]
max_concurrent_handlers = -1
handler_timeout_ms = 1.5e300

[worker.event_systems.worker.processing]
batch_size = 2.5

[worker.web]
enabled = "sometimes"
bind_address = "nowhere"

[orchestration]
processor_uuid = "not-a-uuid"
result_concurrency = 0

[orchestration.web]
bind_address = "localhost"

[telemetry]
exporter = "zipkin"
`)
	_, err := Load(Options{Path: path, Getenv: envOf(nil)})
	texts := errorTexts(t, err)
	// Type errors are reported first (the file is not valid to apply); fix them and the range
	// errors appear.
	for _, want := range []string{
		`config: common.database.pool.max_connections: "lots" is not a whole number`,
		`config: common.backoff.default_backoff_seconds: must hold at least one value`,
		`config: worker.mpsc_channels.handler_dispatch.handler_timeout_ms: 1.5e+300 milliseconds is too large`,
		`config: worker.event_systems.worker.processing.batch_size: 2.5 is not a whole number`,
		`config: worker.web.enabled: "sometimes" is not true or false`,
		`config: orchestration.processor_uuid: "not-a-uuid" is not a UUID`,
	} {
		if !containsText(texts, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(texts, "\n"))
		}
	}

	path = writeTOML(t, `
[common.database]
url = "postgres://x/y"

[common.backoff]
backoff_multiplier = 0.5
jitter_max_percentage = 2.0
max_backoff_seconds = 0.5

[worker]
worker_id = "worker_default-001"
namespaces = ["ok", "not-ok"]
stale_grace_seconds = -1

[worker.mpsc_channels.handler_dispatch]
max_concurrent_handlers = -1

[worker.web]
bind_address = "nowhere"

[orchestration]
result_concurrency = 0

[orchestration.web]
bind_address = "localhost"

[telemetry]
exporter = "zipkin"
`)
	_, err = Load(Options{Path: path, Getenv: envOf(nil)})
	texts = errorTexts(t, err)
	for _, want := range []string{
		"config: worker.mpsc_channels.handler_dispatch.max_concurrent_handlers: -1 is outside 1..10000",
		"config: worker.stale_grace_seconds: must not be negative",
		`config: worker.worker_id: worker id "worker_default-001" is not worker_<uuid>`,
		`config: worker.namespaces: "not-ok": namespaces are 1-29 characters of [A-Za-z0-9_]`,
		`config: worker.web.bind_address: "nowhere" is not host:port`,
		`config: orchestration.web.bind_address: "localhost" is not host:port`,
		"config: orchestration.result_concurrency: 0 is outside 1..1000",
		"config: common.backoff.backoff_multiplier: 0.5 is outside 1..100",
		"config: common.backoff.jitter_max_percentage: 2 is outside 0..1",
		"config: common.backoff.max_backoff_seconds: 500ms is below the base backoff 1s",
		`config: telemetry.exporter: "zipkin" is not stdout or otlp`,
	} {
		if !containsText(texts, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(texts, "\n"))
		}
	}
	if len(texts) != 11 {
		t.Errorf("%d errors, want 11:\n%s", len(texts), strings.Join(texts, "\n"))
	}
}

func TestConfigBadEnvironmentNamesVariable(t *testing.T) {
	env := map[string]string{"DATABASE_URL": testDB, "TASKER_CONCURRENCY": "-3", "TASKER_POLL_INTERVAL": "soon", "TASKER_WEB_ENABLED": "maybe"}
	_, err := Load(Options{Getenv: envOf(env)})
	texts := errorTexts(t, err)
	for _, want := range []string{
		`config: worker.event_systems.worker.timing.fallback_polling_interval_ms (from TASKER_POLL_INTERVAL): "soon" is not a duration (e.g. 500ms, 30s, or seconds as a number)`,
		`config: worker.web.enabled (from TASKER_WEB_ENABLED): "maybe" is not true or false`,
	} {
		if !containsText(texts, want) {
			t.Errorf("missing %q in %q", want, texts)
		}
	}
	// With parse errors fixed, the range error names the variable that set the value.
	delete(env, "TASKER_POLL_INTERVAL")
	delete(env, "TASKER_WEB_ENABLED")
	_, err = Load(Options{Getenv: envOf(env)})
	if texts := errorTexts(t, err); !containsText(texts, "config: worker.mpsc_channels.handler_dispatch.max_concurrent_handlers (from TASKER_CONCURRENCY): -3 is outside 1..10000") {
		t.Fatalf("errors = %q", texts)
	}
	// A flag that sets a bad value is named as a flag.
	_, err = Load(Options{Getenv: envOf(map[string]string{"DATABASE_URL": testDB}), Apply: func(c *Config) error {
		c.Worker.BatchSize = 0
		return nil
	}})
	if texts := errorTexts(t, err); !containsText(texts, "config: worker.event_systems.worker.processing.batch_size (from flag): 0 is outside 1..1000") {
		t.Fatalf("errors = %q", texts)
	}
}

func TestConfigPlaceholders(t *testing.T) {
	path := writeTOML(t, `
[common.database]
url = "${DATABASE_URL:-postgresql://localhost/tasker}"

[worker]
template_path = "${TEMPLATE_ROOT}/tasks"
namespaces = ["${NS_A:-alpha}", "beta"]

[worker.mpsc_channels.handler_dispatch]
max_concurrent_handlers = "${HANDLERS:-12}"

[worker.web]
enabled = "${WEB_ON:-false}"
bind_address = "${TASKER_WEB_BIND_ADDRESS:-0.0.0.0:8081}"

[telemetry]
service_name = "svc-${REGION:-eu}-${STAGE:-}x"
`)
	// Unset and empty variables both take the default (":-"); a variable without default must be
	// set.
	env := map[string]string{"TEMPLATE_ROOT": "/srv", "HANDLERS": "", "REGION": "us"}
	c, err := Load(Options{Path: path, Getenv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != "postgresql://localhost/tasker" || c.TemplatePath != "/srv/tasks" ||
		!reflect.DeepEqual(c.Worker.Namespaces, []string{"alpha", "beta"}) || c.Worker.Concurrency != 12 ||
		c.WorkerWeb.Enabled || c.WorkerWeb.BindAddress != "0.0.0.0:8081" || c.Telemetry.ServiceName != "svc-us-x" {
		t.Fatalf("placeholders: %+v %+v %+v", c.Worker, c.WorkerWeb, c.Telemetry)
	}
	// Set variables win over the placeholder's default; the overlay of DATABASE_URL agrees.
	env = map[string]string{"TEMPLATE_ROOT": "/opt", "HANDLERS": "30", "NS_A": "gamma", "WEB_ON": "true", "DATABASE_URL": testDB}
	c, err = Load(Options{Path: path, Getenv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != testDB || c.TemplatePath != "/opt/tasks" || c.Worker.Concurrency != 30 ||
		c.Worker.Namespaces[0] != "gamma" || !c.WorkerWeb.Enabled {
		t.Fatalf("placeholders with variables set: %+v %+v", c.Worker, c.WorkerWeb)
	}

	_, err = Load(Options{Path: path, Getenv: envOf(map[string]string{"HANDLERS": "many"})})
	texts := errorTexts(t, err)
	for _, want := range []string{
		"config: worker.template_path: ${TEMPLATE_ROOT}: TEMPLATE_ROOT is not set and the placeholder has no default",
		`config: worker.mpsc_channels.handler_dispatch.max_concurrent_handlers: "many" is not a whole number`,
	} {
		if !containsText(texts, want) {
			t.Errorf("missing %q in %q", want, texts)
		}
	}
}

func TestConfigEnvironmentValuesAreNotExpanded(t *testing.T) {
	c, err := Load(Options{Getenv: envOf(map[string]string{"DATABASE_URL": testDB, "OTEL_SERVICE_NAME": "${NAME:-x}"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Telemetry.ServiceName != "${NAME:-x}" {
		t.Fatalf("service name = %q", c.Telemetry.ServiceName)
	}
}

func TestConfigExpand(t *testing.T) {
	env := envOf(map[string]string{"A": "1", "EMPTY": ""})
	for in, want := range map[string]string{
		"plain":                "plain",
		"$A and $":             "$A and $",
		"${A}":                 "1",
		"x${A}y${A}z":          "x1y1z",
		"${B:-def}":            "def",
		"${EMPTY:-def}":        "def",
		"${B:-}":               "",
		"${B:-a:-b}":           "a:-b",
		"${A:-unused}/${B:-d}": "1/d",
	} {
		got, err := expand(in, env)
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${A", "${}", "${1X:-a}", "${B}", "${A-B}"} {
		if got, err := expand(in, env); err == nil {
			t.Errorf("expand(%q) = %q, want an error", in, got)
		}
	}
}

func TestConfigCommonVisibilityTimeoutFallback(t *testing.T) {
	path := writeTOML(t, `
[common.queues]
default_visibility_timeout_seconds = 50
[orchestration.event_systems.orchestration.timing]
visibility_timeout_seconds = 70
`)
	c, err := Load(Options{Path: path, Getenv: envOf(map[string]string{"DATABASE_URL": testDB})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Worker.VisibilityTimeout != 50*time.Second || c.Orchestration.VisibilityTimeout != 70*time.Second {
		t.Fatalf("worker vt %s, orchestration vt %s", c.Worker.VisibilityTimeout, c.Orchestration.VisibilityTimeout)
	}
	// A bad fallback value is named by the key that set it.
	path = writeTOML(t, "[common.queues]\ndefault_visibility_timeout_seconds = 0\n")
	_, err = Load(Options{Path: path, Getenv: envOf(map[string]string{"DATABASE_URL": testDB})})
	texts := errorTexts(t, err)
	if !containsText(texts, "config: common.queues.default_visibility_timeout_seconds: must be at least 1s") ||
		!containsText(texts, "config: common.queues.default_visibility_timeout_seconds: 0s is below 1s") {
		t.Fatalf("errors = %q", texts)
	}
}

// TestConfigEveryKeyApplies sets every key of the table to a non-default value in one file and
// checks each one reached its field.
func TestConfigEveryKeyApplies(t *testing.T) {
	pid := uuid.Must(uuid.NewV7())
	wid := "worker_" + uuid.Must(uuid.NewV7()).String()
	values := map[string]string{
		"common.database.url":                                                                 `"postgres://all/keys"`,
		"common.database.pool.max_connections":                                                `33`,
		"common.database.statement_timeout_ms":                                                `34000`,
		"common.database.lock_timeout_ms":                                                     `35000`,
		"common.database.call_timeout_ms":                                                     `36000`,
		"common.queues.default_visibility_timeout_seconds":                                    `41`,
		"common.pgmq_database.url":                                                            `"postgres://all/keys"`,
		"common.pgmq_database.enabled":                                                        `true`,
		"common.queues.backend":                                                               `"pgmq"`,
		"common.queues.orchestration_namespace":                                               `"orchestration"`,
		"common.queues.worker_namespace":                                                      `"worker"`,
		"common.queues.naming_pattern":                                                        `"{namespace}_{name}_queue"`,
		"common.queues.orchestration_queues.task_requests":                                    `"orchestration_task_requests"`,
		"common.queues.orchestration_queues.task_finalizations":                               `"orchestration_task_finalizations"`,
		"common.queues.orchestration_queues.step_results":                                     `"orchestration_step_results"`,
		"common.queues.pgmq.poll_interval_ms":                                                 `999`,
		"worker.event_systems.worker.metadata.fallback_poller.polling_interval_ms":            `998`,
		"worker.event_systems.worker.metadata.fallback_poller.supported_namespaces":           `["ignored"]`,
		"orchestration.dlq.staleness_detection.enabled":                                       `false`,
		"orchestration.dlq.staleness_detection.dry_run":                                       `true`,
		"orchestration.dlq.staleness_detection.batch_size":                                    `11`,
		"orchestration.dlq.staleness_detection.thresholds.waiting_for_dependencies_minutes":   `12`,
		"orchestration.dlq.staleness_detection.thresholds.waiting_for_retry_minutes":          `13`,
		"orchestration.dlq.staleness_detection.thresholds.steps_in_process_minutes":           `14`,
		"orchestration.dlq.staleness_detection.thresholds.task_max_lifetime_hours":            `15`,
		"common.backoff.default_backoff_seconds":                                              `[2, 4, 8]`,
		"common.backoff.max_backoff_seconds":                                                  `60`,
		"common.backoff.backoff_multiplier":                                                   `3.0`,
		"common.backoff.jitter_enabled":                                                       `false`,
		"common.backoff.jitter_max_percentage":                                                `0.25`,
		"worker.worker_id":                                                                    `"` + wid + `"`,
		"worker.namespaces":                                                                   `["a", "b"]`,
		"worker.template_path":                                                                `"/t"`,
		"worker.event_systems.worker.timing.visibility_timeout_seconds":                       `42`,
		"worker.event_systems.worker.timing.fallback_polling_interval_ms":                     `150`,
		"worker.event_systems.worker.processing.batch_size":                                   `3`,
		"worker.mpsc_channels.handler_dispatch.max_concurrent_handlers":                       `4`,
		"worker.mpsc_channels.handler_dispatch.handler_timeout_ms":                            `5000`,
		"worker.shutdown_timeout_ms":                                                          `6000`,
		"worker.stale_grace_seconds":                                                          `7`,
		"worker.web.enabled":                                                                  `false`,
		"worker.web.bind_address":                                                             `"127.0.0.1:1"`,
		"orchestration.processor_uuid":                                                        `"` + pid.String() + `"`,
		"orchestration.event_systems.orchestration.timing.fallback_polling_interval_seconds":  `0.25`,
		"orchestration.event_systems.orchestration.timing.visibility_timeout_seconds":         `43`,
		"orchestration.event_systems.orchestration.processing.batch_size":                     `44`,
		"orchestration.event_systems.task_readiness.timing.fallback_polling_interval_seconds": `2`,
		"orchestration.result_concurrency":                                                    `5`,
		"orchestration.recovery_interval_seconds":                                             `6`,
		"orchestration.sweep_batch_size":                                                      `7`,
		"orchestration.stale_grace_seconds":                                                   `8`,
		"orchestration.stuck_threshold_seconds":                                               `9`,
		"orchestration.decision_points.max_steps_per_decision":                                `10`,
		"orchestration.web.enabled":                                                           `false`,
		"orchestration.web.bind_address":                                                      `"127.0.0.1:2"`,
		"telemetry.enabled":                                                                   `true`,
		"telemetry.service_name":                                                              `"svc"`,
		"telemetry.exporter":                                                                  `"otlp"`,
		"telemetry.endpoint":                                                                  `"http://127.0.0.1:4318"`,
	}
	// The auth sections' keys (worker.web.auth, orchestration.web.auth).
	for k, v := range map[string]string{
		"worker.web.auth.enabled":                        `true`,
		"worker.web.auth.jwt_issuer":                     `"w-iss"`,
		"worker.web.auth.jwt_audience":                   `"w-aud"`,
		"worker.web.auth.jwt_verification_method":        `"public_key"`,
		"worker.web.auth.jwt_public_key":                 `"W-PEM"`,
		"worker.web.auth.jwt_public_key_path":            `"/w.pem"`,
		"worker.web.auth.api_key_header":                 `"X-W"`,
		"worker.web.auth.api_keys_enabled":               `true`,
		"worker.web.auth.api_keys":                       `[{key = "w1", permissions = ["worker:*"]}]`,
		"worker.web.auth.api_key":                        `"w-legacy"`,
		"worker.web.auth.strict_validation":              `false`,
		"worker.web.auth.log_unknown_permissions":        `true`,
		"orchestration.web.auth.enabled":                 `true`,
		"orchestration.web.auth.jwt_issuer":              `"iss"`,
		"orchestration.web.auth.jwt_audience":            `"aud"`,
		"orchestration.web.auth.jwt_verification_method": `"public_key"`,
		"orchestration.web.auth.jwt_public_key":          `"PEM"`,
		"orchestration.web.auth.jwt_public_key_path":     `"/k.pem"`,
		"orchestration.web.auth.api_key_header":          `"X-Key"`,
		"orchestration.web.auth.api_keys_enabled":        `true`,
		"orchestration.web.auth.api_keys":                `[{key = "k1", permissions = ["tasks:*"], description = "one"}]`,
		"orchestration.web.auth.api_key":                 `"legacy"`,
		"orchestration.web.auth.strict_validation":       `false`,
		"orchestration.web.auth.log_unknown_permissions": `false`,
	} {
		values[k] = v
	}
	if len(values) != len(table) {
		t.Fatalf("test covers %d keys, table has %d", len(values), len(table))
	}
	var b strings.Builder
	for _, e := range table {
		v, ok := values[e.Key]
		if !ok {
			t.Fatalf("no test value for %s", e.Key)
		}
		b.WriteString(`"` + e.Key + `" = ` + v + "\n") // a quoted dotted key is one key: must fail
	}
	if _, err := Load(Options{Path: writeTOML(t, b.String()), Getenv: envOf(nil)}); err == nil {
		t.Fatal("quoted dotted keys were accepted")
	}
	b.Reset()
	for _, e := range table {
		b.WriteString(e.Key + " = " + values[e.Key] + "\n") // dotted keys at top level
	}
	c, err := Load(Options{Path: writeTOML(t, b.String()), Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Database: Database{URL: "postgres://all/keys", MaxConns: 33, StatementTimeout: 34 * time.Second, LockTimeout: 35 * time.Second},
		Worker: worker.Config{
			WorkerID: wid, Namespaces: []string{"a", "b"},
			VisibilityTimeout: 42 * time.Second, PollInterval: 150 * time.Millisecond,
			BatchSize: 3, Concurrency: 4, StepTimeout: 5 * time.Second, ShutdownTimeout: 6 * time.Second,
			StaleGrace: 7 * time.Second, DBTimeout: 36 * time.Second,
		},
		TemplatePath: "/t",
		WorkerWeb:    Web{Enabled: false, BindAddress: "127.0.0.1:1"},
		Telemetry:    Telemetry{Enabled: true, ServiceName: "svc", Exporter: "otlp", Endpoint: "http://127.0.0.1:4318"},
		Orchestration: orchestration.Config{
			ProcessorUUID: pid, PollInterval: 250 * time.Millisecond, VisibilityTimeout: 43 * time.Second,
			ResultBatchSize: 44, ResultConcurrency: 5, ReadinessInterval: 2 * time.Second, RecoveryInterval: 6 * time.Second,
			SweepBatchSize: 7, StaleGrace: 8 * time.Second, StuckThreshold: 9 * time.Second, MaxDecisionSteps: 10,
			Backoff:            orchestration.BackoffConfig{Base: 2 * time.Second, Max: time.Minute, Multiplier: 3, JitterPercent: orchestration.NoJitter},
			DefaultStepTimeout: 5 * time.Second, DBTimeout: 36 * time.Second,
			Staleness: orchestration.StalenessConfig{Disabled: true, DryRun: true, BatchSize: 11,
				WaitingForDependencies: 12 * time.Minute, WaitingForRetry: 13 * time.Minute, StepsInProcess: 14 * time.Minute,
				TaskMaxLifetime: 15 * time.Hour},
		},
		OrchestrationWeb: Web{Enabled: false, BindAddress: "127.0.0.1:2"},
		WorkerAuth: WebAuth{Enabled: true, JWTIssuer: "w-iss", JWTAudience: "w-aud", JWTVerificationMethod: "public_key",
			JWTPublicKey: "W-PEM", JWTPublicKeyPath: "/w.pem", APIKeyHeader: "X-W", APIKeysEnabled: true,
			APIKeys: []APIKey{{Key: "w1", Permissions: []string{"worker:*"}}}, APIKey: "w-legacy", LogUnknownPermissions: true},
		OrchestrationAuth: WebAuth{Enabled: true, JWTIssuer: "iss", JWTAudience: "aud", JWTVerificationMethod: "public_key",
			JWTPublicKey: "PEM", JWTPublicKeyPath: "/k.pem", APIKeyHeader: "X-Key", APIKeysEnabled: true,
			APIKeys: []APIKey{{Key: "k1", Permissions: []string{"tasks:*"}, Description: "one"}}, APIKey: "legacy"},
	}
	if !reflect.DeepEqual(c.Worker, want.Worker) || c.WorkerWeb != want.WorkerWeb || c.Telemetry != want.Telemetry ||
		c.Orchestration != want.Orchestration || c.OrchestrationWeb != want.OrchestrationWeb || c.Database != want.Database ||
		c.TemplatePath != want.TemplatePath || !reflect.DeepEqual(c.OrchestrationAuth, want.OrchestrationAuth) ||
		!reflect.DeepEqual(c.WorkerAuth, want.WorkerAuth) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	for _, e := range table {
		if got := c.Source(e.Key); got != "file" {
			t.Errorf("Source(%s) = %q", e.Key, got)
		}
	}
}

func TestConfigSyntaxErrorNamesFile(t *testing.T) {
	path := writeTOML(t, "[worker\nx = 1\n")
	_, err := Load(Options{Path: path, Getenv: envOf(nil)})
	texts := errorTexts(t, err)
	if !strings.HasPrefix(texts[0], "config: "+path+": toml: line 2") {
		t.Fatalf("errors = %q", texts)
	}
}

func TestConfigKeysDocumented(t *testing.T) {
	keys := Keys()
	if len(keys) != len(table) {
		t.Fatalf("%d docs for %d keys", len(keys), len(table))
	}
	md := MarkdownTable()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.Key] {
			t.Errorf("duplicate key %s", k.Key)
		}
		seen[k.Key] = true
		if k.Default == "" || k.Meaning == "" {
			t.Errorf("%s: default %q, meaning %q", k.Key, k.Default, k.Meaning)
		}
		if !strings.Contains(md, "| `"+k.Key+"` |") {
			t.Errorf("markdown table lacks %s", k.Key)
		}
	}
	for key, want := range map[string]string{
		"worker.mpsc_channels.handler_dispatch.max_concurrent_handlers":   "10",
		"worker.mpsc_channels.handler_dispatch.handler_timeout_ms":        "30000",
		"worker.event_systems.worker.timing.fallback_polling_interval_ms": "500",
		"common.backoff.backoff_multiplier":                               "2.0",
		"worker.web.bind_address":                                         `"0.0.0.0:8081"`,
	} {
		for _, k := range keys {
			if k.Key == key && k.Default != want {
				t.Errorf("default of %s = %q, want %q", key, k.Default, want)
			}
		}
	}
	// Every variable worker.Config.FromEnv reads is documented on a key.
	for _, v := range []string{"DATABASE_URL", "TASKER_NAMESPACES", "TASKER_TEMPLATE_PATH", "TASKER_CONCURRENCY",
		"TASKER_BATCH_SIZE", "TASKER_POLL_INTERVAL", "TASKER_VISIBILITY_TIMEOUT", "TASKER_STEP_TIMEOUT",
		"TASKER_STALE_GRACE", "TASKER_SHUTDOWN_TIMEOUT", "TASKER_WORKER_ID", "TASKER_DB_MAX_CONNS", "TASKER_DB_CALL_TIMEOUT"} {
		if entryByEnv(v) == nil {
			t.Errorf("%s is not documented", v)
		}
	}
	// The README's table is this one (regenerate: TASKER_WRITE_README_TABLE=1 go test ./config/).
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start, next = "| Key | Environment | Default | Meaning |\n", "\n### "
	i := strings.Index(string(readme), start)
	j := strings.Index(string(readme[max(i, 0):]), next)
	if i < 0 || j < 0 {
		t.Fatal("README.md has no configuration table followed by a section")
	}
	j += i
	if got := string(readme[i:j]); strings.TrimSpace(got) != strings.TrimSpace(md) {
		if os.Getenv("TASKER_WRITE_README_TABLE") == "1" {
			out := string(readme[:i]) + strings.TrimSpace(md) + "\n\n" + string(readme[j:])
			if err := os.WriteFile("../README.md", []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md's configuration table differs from MarkdownTable(); regenerate it with TASKER_WRITE_README_TABLE=1 go test ./config/")
	}
}

// TestConfigJitterSwitchAnyOrder checks that jitter_enabled = false disables jitter whether it
// comes before or after jitter_max_percentage, and that an out-of-range percentage is still
// reported when jitter is off.
func TestConfigJitterSwitchAnyOrder(t *testing.T) {
	env := envOf(map[string]string{"DATABASE_URL": testDB})
	for _, body := range []string{
		"[common.backoff]\njitter_enabled = false\njitter_max_percentage = 0.3\n",
		"[common.backoff]\njitter_max_percentage = 0.3\njitter_enabled = false\n",
	} {
		c, err := Load(Options{Path: writeTOML(t, body), Getenv: env})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Orchestration.Backoff.JitterPercent; got != orchestration.NoJitter {
			t.Errorf("%q: JitterPercent = %g, want NoJitter", body, got)
		}
	}
	c, err := Load(Options{Path: writeTOML(t, "[common.backoff]\njitter_enabled = true\njitter_max_percentage = 0.3\n"), Getenv: env})
	if err != nil || c.Orchestration.Backoff.JitterPercent != 0.3 {
		t.Fatalf("jitter on: %g, %v", c.Orchestration.Backoff.JitterPercent, err)
	}
	_, err = Load(Options{Path: writeTOML(t, "[common.backoff]\njitter_enabled = false\njitter_max_percentage = 1.5\n"), Getenv: env})
	if texts := errorTexts(t, err); !containsText(texts, "config: common.backoff.jitter_max_percentage: 1.5 is outside 0..1") {
		t.Fatalf("errors = %q", texts)
	}
}

// TestConfigOrchestratorFollowsWorkerTimeouts checks that the step timeout and the database call
// timeout, one key each, reach the orchestrator from the file, the environment and flags alike.
func TestConfigOrchestratorFollowsWorkerTimeouts(t *testing.T) {
	path := writeTOML(t, "[worker.mpsc_channels.handler_dispatch]\nhandler_timeout_ms = 45000\n")
	c, err := Load(Options{Path: path, Getenv: envOf(map[string]string{"DATABASE_URL": testDB, "TASKER_DB_CALL_TIMEOUT": "4s"})})
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Orchestration; o.DefaultStepTimeout != 45*time.Second || o.DBTimeout != 4*time.Second {
		t.Fatalf("orchestration step timeout %s, db timeout %s", o.DefaultStepTimeout, o.DBTimeout)
	}
	c, err = Load(Options{Path: path, Getenv: envOf(map[string]string{"DATABASE_URL": testDB}), Apply: func(c *Config) error {
		c.Worker.StepTimeout = time.Minute
		return nil
	}})
	if err != nil || c.Orchestration.DefaultStepTimeout != time.Minute {
		t.Fatalf("after a flag: %s, %v", c.Orchestration.DefaultStepTimeout, err)
	}
}
