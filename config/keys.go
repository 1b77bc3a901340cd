package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// KeyDoc documents one configuration key.
type KeyDoc struct {
	// Key is the dotted TOML key, e.g. worker.web.bind_address.
	Key string
	// Env is the environment variable that overrides it; empty when none does.
	Env string
	// Default is the built-in value, as it would be written in the file.
	Default string
	// Meaning says what the key does, and whether tasker-core has it ("ours" when it does not).
	Meaning string
}

// Key names the Validate checks use for non-worker settings.
const (
	keyOrchPoll          = "orchestration.event_systems.orchestration.timing.fallback_polling_interval_seconds"
	keyOrchVT            = "orchestration.event_systems.orchestration.timing.visibility_timeout_seconds"
	keyOrchBatch         = "orchestration.event_systems.orchestration.processing.batch_size"
	keyOrchReadiness     = "orchestration.event_systems.task_readiness.timing.fallback_polling_interval_seconds"
	keyOrchConcurrency   = "orchestration.result_concurrency"
	keyOrchRecovery      = "orchestration.recovery_interval_seconds"
	keyOrchSweepBatch    = "orchestration.sweep_batch_size"
	keyOrchStaleGrace    = "orchestration.stale_grace_seconds"
	keyOrchStuck         = "orchestration.stuck_threshold_seconds"
	keyOrchMaxDecision   = "orchestration.decision_points.max_steps_per_decision"
	keyBackoffBase       = "common.backoff.default_backoff_seconds"
	keyBackoffMax        = "common.backoff.max_backoff_seconds"
	keyBackoffMultiplier = "common.backoff.backoff_multiplier"
	keyBackoffJitter     = "common.backoff.jitter_max_percentage"
	keyJitterEnabled     = "common.backoff.jitter_enabled"
	keyDatabaseURL       = "common.database.url"
	keyMaxConns          = "common.database.pool.max_connections"
	keyCommonVT          = "common.queues.default_visibility_timeout_seconds"
	keyWorkerVT          = "worker.event_systems.worker.timing.visibility_timeout_seconds"
	keyStatementTimeout  = "common.database.statement_timeout_ms"
	keyLockTimeout       = "common.database.lock_timeout_ms"
	keyPGMQURL           = "common.pgmq_database.url"
	keyWorkerID          = "worker.worker_id"
	keyWorkerPoll        = "worker.event_systems.worker.timing.fallback_polling_interval_ms"
	keyWorkerNamespaces  = "worker.namespaces"
	keyStaleness         = "orchestration.dlq.staleness_detection"
)

type kind int

const (
	kString kind = iota
	kStrings
	kInt
	kBool
	kFloat
	kMillis      // integer (or fractional) milliseconds -> time.Duration
	kSeconds     // integer (or fractional) seconds -> time.Duration
	kSecondsList // array of seconds; the first is used (tasker-core's default_backoff_seconds)
	kUUID
	kAPIKeys // array of tables {key, permissions, description} -> []APIKey
	kMinutes // integer (or fractional) minutes -> time.Duration
	kHours   // integer (or fractional) hours -> time.Duration
	kNotBool // a boolean stored negated (tasker-core's enabled, our Disabled)
)

// entry is one key of the table that drives decoding, the environment overlay, error naming and
// the documentation. field is the dotted Go path of the setting inside Config; the keys without
// one (common.queues.default_visibility_timeout_seconds, common.backoff.jitter_enabled,
// common.pgmq_database.url and the fixed ones) are applied or checked by decodeTOML.
type entry struct {
	Key, Env, Meaning string
	field             string
	kind              kind
	// defaultDoc overrides the default shown in the docs when it is not a fixed value.
	defaultDoc string
	// fallbackOf names the key that wins over this one: the file's value of this key is used
	// only when that key is not set in the file (tasker-core's keys for our settings).
	fallbackOf string
	// fixed is the only value tasker-go supports (after conversion): the key is checked, not
	// stored.
	fixed any
}

// table lists every accepted key, in documentation order. Where two keys set one field, the
// first is the primary one (named for values that came from flags).
var table = slices.Concat([]entry{
	{Key: keyDatabaseURL, Env: "DATABASE_URL", field: "Database.URL", kind: kString, defaultDoc: "(required)",
		Meaning: "PostgreSQL URL of the tasker schema and PGMQ. tasker-core's file writes `${DATABASE_URL:-…}`."},
	{Key: keyMaxConns, Env: "TASKER_DB_MAX_CONNS", field: "Database.MaxConns", kind: kInt, defaultDoc: "max_concurrent_handlers + 4",
		Meaning: "Database pool size (tasker-core default 25). The pool has at least max_concurrent_handlers + 4 connections in a worker, + 16 in `tasker dev`, 16 in an orchestrator; a larger value here raises it."},
	{Key: keyStatementTimeout, Env: "TASKER_DB_STATEMENT_TIMEOUT", field: "Database.StatementTimeout", kind: kMillis,
		Meaning: "Server-side statement_timeout of every connection; 0 keeps the server's (ours; a URL parameter wins). Migrations lift it."},
	{Key: keyLockTimeout, Env: "TASKER_DB_LOCK_TIMEOUT", field: "Database.LockTimeout", kind: kMillis,
		Meaning: "Server-side lock_timeout of every connection; 0 keeps the server's (ours; a URL parameter wins)."},
	{Key: "common.database.call_timeout_ms", Env: "TASKER_DB_CALL_TIMEOUT", field: "Worker.DBTimeout", kind: kMillis,
		Meaning: "Deadline of each database call of the worker's and orchestrator's loops (read, claim, completion, heartbeat, result processing, sweeps x4); a call that hits it drops its connection (ours)."},
	{Key: keyPGMQURL, kind: kString, defaultDoc: `""`,
		Meaning: "tasker-core's separate PGMQ database: empty or equal to common.database.url (tasker-go keeps the queues in the tasker database)."},
	{Key: "common.pgmq_database.enabled", kind: kBool, fixed: true, defaultDoc: "true",
		Meaning: "Must be true: tasker-go's messaging is PGMQ."},
	{Key: "common.queues.backend", kind: kString, fixed: "pgmq", defaultDoc: `"pgmq"`,
		Meaning: "Messaging backend; only `pgmq` (tasker-core's `rabbitmq` is not supported, its settings are ignored)."},
	{Key: "common.queues.orchestration_namespace", kind: kString, fixed: "orchestration", defaultDoc: `"orchestration"`,
		Meaning: "Checked: tasker-go's queue names are fixed."},
	{Key: "common.queues.worker_namespace", kind: kString, fixed: "worker", defaultDoc: `"worker"`,
		Meaning: "Checked: step queues are `worker_<namespace>_queue`."},
	{Key: "common.queues.naming_pattern", kind: kString, fixed: "{namespace}_{name}_queue", defaultDoc: `"{namespace}_{name}_queue"`,
		Meaning: "Checked: tasker-go's queue names are fixed."},
	{Key: "common.queues.orchestration_queues.task_requests", kind: kString, fixed: "orchestration_task_requests",
		defaultDoc: `"orchestration_task_requests"`, Meaning: "Checked: fixed queue name."},
	{Key: "common.queues.orchestration_queues.task_finalizations", kind: kString, fixed: "orchestration_task_finalizations",
		defaultDoc: `"orchestration_task_finalizations"`, Meaning: "Checked: fixed queue name."},
	{Key: "common.queues.orchestration_queues.step_results", kind: kString, fixed: "orchestration_step_results",
		defaultDoc: `"orchestration_step_results"`, Meaning: "Checked: fixed queue name."},
	{Key: keyCommonVT, kind: kSeconds, defaultDoc: "30",
		Meaning: "Visibility timeout used by the worker and the orchestrator when their own key is not set."},
	{Key: keyBackoffBase, field: "Orchestration.Backoff.Base", kind: kSecondsList, defaultDoc: "[1]",
		Meaning: "Retry backoff base: the first element is used, as in tasker-core (its default is [1, 5, 15, 30, 60])."},
	{Key: keyBackoffMax, field: "Orchestration.Backoff.Max", kind: kSeconds, Meaning: "Retry backoff cap."},
	{Key: keyBackoffMultiplier, field: "Orchestration.Backoff.Multiplier", kind: kFloat, Meaning: "Retry backoff growth per attempt (1..100)."},
	{Key: keyJitterEnabled, kind: kBool, defaultDoc: "true", Meaning: "Randomize retry delays."},
	{Key: keyBackoffJitter, field: "Orchestration.Backoff.JitterPercent", kind: kFloat, Meaning: "Largest jitter as a fraction of the delay (0..1)."},

	{Key: keyWorkerID, Env: "TASKER_WORKER_ID", field: "Worker.WorkerID", kind: kString, defaultDoc: "worker_<new UUIDv7>",
		Meaning: "Worker identity, `worker_<uuid>`; its uuid is recorded as worker_uuid in transitions. In the file, tasker-core's display names (`test-worker-001`) are ignored with a warning and a new id is used."},
	{Key: keyWorkerNamespaces, Env: "TASKER_NAMESPACES", field: "Worker.Namespaces", kind: kStrings, defaultDoc: "[] (the templates' namespaces)",
		Meaning: "Namespaces whose worker_<ns>_queue this worker consumes (ours; env: comma separated)."},
	{Key: "worker.event_systems.worker.metadata.fallback_poller.supported_namespaces", field: "Worker.Namespaces", kind: kStrings,
		fallbackOf: keyWorkerNamespaces, defaultDoc: "[]", Meaning: "tasker-core's key for worker.namespaces, used when that key is not set."},
	{Key: "worker.template_path", Env: "TASKER_TEMPLATE_PATH", field: "TemplatePath", kind: kString,
		Meaning: "Directory of task template YAML files registered at start (ours; tasker-core reads only the variable)."},
	{Key: keyWorkerVT, Env: "TASKER_VISIBILITY_TIMEOUT", field: "Worker.VisibilityTimeout", kind: kSeconds,
		Meaning: "PGMQ visibility timeout of a read step message; extended while the handler runs."},
	{Key: keyWorkerPoll, Env: "TASKER_POLL_INTERVAL", field: "Worker.PollInterval", kind: kMillis,
		Meaning: "Fallback poll period when no notification arrives (ours: tasker-core has a seconds key it does not read)."},
	{Key: "worker.event_systems.worker.metadata.fallback_poller.polling_interval_ms", field: "Worker.PollInterval", kind: kMillis,
		fallbackOf: keyWorkerPoll, Meaning: "tasker-core's worker fallback poll period, used when the key above is not set."},
	{Key: "common.queues.pgmq.poll_interval_ms", field: "Worker.PollInterval", kind: kMillis, fallbackOf: keyWorkerPoll,
		Meaning: "tasker-core's PGMQ poll period: the worker's when neither key above is set."},
	{Key: "worker.event_systems.worker.processing.batch_size", Env: "TASKER_BATCH_SIZE", field: "Worker.BatchSize", kind: kInt,
		Meaning: "Most messages one read takes (1..1000)."},
	{Key: "worker.mpsc_channels.handler_dispatch.max_concurrent_handlers", Env: "TASKER_CONCURRENCY", field: "Worker.Concurrency", kind: kInt,
		Meaning: "Handlers running at once (1..10000)."},
	{Key: "worker.mpsc_channels.handler_dispatch.handler_timeout_ms", Env: "TASKER_STEP_TIMEOUT", field: "Worker.StepTimeout", kind: kMillis,
		Meaning: "Timeout of steps whose template sets no timeout_seconds; also the orchestrator's default step timeout."},
	{Key: "worker.shutdown_timeout_ms", Env: "TASKER_SHUTDOWN_TIMEOUT", field: "Worker.ShutdownTimeout", kind: kMillis,
		Meaning: "How long in-flight handlers may drain on shutdown (ours)."},
	{Key: "worker.stale_grace_seconds", Env: "TASKER_STALE_GRACE", field: "Worker.StaleGrace", kind: kSeconds,
		Meaning: "Added to a step's timeout before an in_progress step of another worker counts as abandoned (ours)."},
	{Key: "worker.web.enabled", Env: "TASKER_WEB_ENABLED", field: "WorkerWeb.Enabled", kind: kBool,
		Meaning: "Serve /health, /metrics and /v1/templates."},
	{Key: "worker.web.bind_address", Env: "TASKER_WEB_BIND_ADDRESS", field: "WorkerWeb.BindAddress", kind: kString,
		Meaning: "host:port of the worker's HTTP server."},
}, authEntries("worker.web.auth", "WorkerAuth", "the worker's /v1/templates"), []entry{

	{Key: "orchestration.processor_uuid", field: "Orchestration.ProcessorUUID", kind: kUUID, defaultDoc: `"" (a new UUIDv7 per start)`,
		Meaning: "Orchestrator id written to task_transitions.processor_uuid (ours)."},
	{Key: keyOrchPoll, field: "Orchestration.PollInterval", kind: kSeconds,
		Meaning: "Fallback poll period of orchestration_step_results (tasker-core 5, test 1); fractions allowed."},
	{Key: keyOrchVT, field: "Orchestration.VisibilityTimeout", kind: kSeconds,
		Meaning: "Visibility timeout of a result message being processed."},
	{Key: keyOrchBatch, field: "Orchestration.ResultBatchSize", kind: kInt,
		Meaning: "Result messages per read (1..1000)."},
	{Key: keyOrchReadiness, field: "Orchestration.ReadinessInterval", kind: kSeconds,
		Meaning: "Period of the readiness sweep (tasker-core 5, test 1); fractions allowed."},
	{Key: keyOrchConcurrency, field: "Orchestration.ResultConcurrency", kind: kInt,
		Meaning: "Result messages processed at once (ours, 1..1000)."},
	{Key: keyOrchRecovery, field: "Orchestration.RecoveryInterval", kind: kSeconds,
		Meaning: "Period of the recovery sweep (ours)."},
	{Key: keyOrchSweepBatch, field: "Orchestration.SweepBatchSize", kind: kInt,
		Meaning: "Tasks or steps one sweep pass handles (ours, 1..10000)."},
	{Key: keyOrchStaleGrace, field: "Orchestration.StaleGrace", kind: kSeconds,
		Meaning: "Added to a step's timeout before the orchestrator recovers it from a dead worker (ours)."},
	{Key: keyOrchStuck, field: "Orchestration.StuckThreshold", kind: kSeconds,
		Meaning: "How long a task may rest in a transient state before the recovery sweep re-evaluates it (ours)."},
	{Key: keyOrchMaxDecision, field: "Orchestration.MaxDecisionSteps", kind: kInt,
		Meaning: "Most steps one decision outcome may create."},
	{Key: keyStaleness + ".enabled", field: "Orchestration.Staleness.Disabled", kind: kNotBool,
		Meaning: "Staleness detection in the recovery sweep (stale tasks go to the DLQ)."},
	{Key: keyStaleness + ".dry_run", field: "Orchestration.Staleness.DryRun", kind: kBool,
		Meaning: "Only report stale tasks."},
	{Key: keyStaleness + ".batch_size", field: "Orchestration.Staleness.BatchSize", kind: kInt,
		Meaning: "Stale tasks one pass handles."},
	{Key: keyStaleness + ".thresholds.waiting_for_dependencies_minutes", field: "Orchestration.Staleness.WaitingForDependencies", kind: kMinutes,
		Meaning: "A task waiting for dependencies this long is stale."},
	{Key: keyStaleness + ".thresholds.waiting_for_retry_minutes", field: "Orchestration.Staleness.WaitingForRetry", kind: kMinutes,
		Meaning: "A task waiting for a retry this long is stale."},
	{Key: keyStaleness + ".thresholds.steps_in_process_minutes", field: "Orchestration.Staleness.StepsInProcess", kind: kMinutes,
		Meaning: "A task with steps in process this long is stale."},
	{Key: keyStaleness + ".thresholds.task_max_lifetime_hours", field: "Orchestration.Staleness.TaskMaxLifetime", kind: kHours,
		Meaning: "A task older than this is stale."},
	{Key: "orchestration.web.enabled", field: "OrchestrationWeb.Enabled", kind: kBool,
		Meaning: "Serve the orchestrator's /health and /metrics."},
	{Key: "orchestration.web.bind_address", field: "OrchestrationWeb.BindAddress", kind: kString,
		Meaning: "host:port of the orchestrator's HTTP server."},
}, authEntries("orchestration.web.auth", "OrchestrationAuth", "the orchestrator's /v1 API and /config"), []entry{
	{Key: "telemetry.enabled", Env: "TASKER_TELEMETRY_ENABLED", field: "Telemetry.Enabled", kind: kBool,
		Meaning: "Emit an OpenTelemetry span per step execution."},
	{Key: "telemetry.service_name", Env: "OTEL_SERVICE_NAME", field: "Telemetry.ServiceName", kind: kString,
		Meaning: "service.name resource attribute of the spans."},
	{Key: "telemetry.exporter", Env: "TASKER_TELEMETRY_EXPORTER", field: "Telemetry.Exporter", kind: kString,
		Meaning: "`stdout` (JSON spans on standard output) or `otlp` (OTLP over HTTP)."},
	{Key: "telemetry.endpoint", Env: "OTEL_EXPORTER_OTLP_ENDPOINT", field: "Telemetry.Endpoint", kind: kString, defaultDoc: `"" (http://localhost:4318)`,
		Meaning: "OTLP/HTTP collector URL."},
})

var (
	byKey      = map[string]*entry{}
	tableDir   = map[string]bool{} // every proper prefix of a key: a TOML table
	tcKeys     = map[string]bool{} // taskerCoreKeys
	tcTables   = map[string]bool{} // every proper prefix of a tasker-core key
	candidates []string            // keys and tables (ours and tasker-core's), sorted, for suggestions
)

func init() {
	prefixes := func(key string, into map[string]bool) {
		parts := strings.Split(key, ".")
		for j := 1; j < len(parts); j++ {
			into[strings.Join(parts[:j], ".")] = true
		}
	}
	for i := range table {
		e := &table[i]
		byKey[e.Key] = e
		prefixes(e.Key, tableDir)
	}
	for _, k := range taskerCoreKeys {
		tcKeys[k] = true
		prefixes(k, tcTables)
	}
	seen := map[string]bool{}
	for _, set := range []map[string]bool{tableDir, tcKeys, tcTables} {
		for k := range set {
			seen[k] = true
		}
	}
	for k := range byKey {
		seen[k] = true
	}
	for k := range seen {
		candidates = append(candidates, k)
	}
	sort.Strings(candidates)
}

func entryByEnv(env string) *entry {
	for i := range table {
		if table[i].Env == env {
			return &table[i]
		}
	}
	return nil
}

// Keys documents every accepted key, in table order, with defaults taken from Default.
func Keys() []KeyDoc {
	def := Default()
	out := make([]KeyDoc, 0, len(table))
	for i := range table {
		e := &table[i]
		d := e.defaultDoc
		if d == "" {
			d = formatValue(e.kind, fieldOf(&def, e.field))
		}
		out = append(out, KeyDoc{Key: e.Key, Env: e.Env, Default: d, Meaning: e.Meaning})
	}
	return out
}

// MarkdownTable renders Keys as a Markdown table (key, environment variable, default, meaning)
// for the README.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Key | Environment | Default | Meaning |\n|---|---|---|---|\n")
	for _, k := range Keys() {
		env := ""
		if k.Env != "" {
			env = "`" + k.Env + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", k.Key, env, k.Default, strings.ReplaceAll(k.Meaning, "|", `\|`))
	}
	b.WriteString("\nDuration variables take Go durations (`500ms`, `30s`) or bare seconds; file keys use the unit in their name. " +
		"String values in the file may use `${VAR}` and `${VAR:-default}`. Precedence: defaults < files " +
		"(a tasker-core directory, `--config-dir` or `TASKER_CONFIG_DIR`: `base/*.toml` then `environments/$TASKER_ENV/*.toml`; " +
		"then `--config` or `TASKER_CONFIG_PATH`) < environment < flags. Keys of tasker-core's schema not listed here are " +
		"accepted and reported once as ignored (`tasker config validate` lists them).\n")
	return b.String()
}

// fieldOf returns the settable field at the dotted Go path inside c.
func fieldOf(c *Config, path string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(path, ".") {
		v = v.FieldByName(name)
		if !v.IsValid() {
			panic("config: no field " + path)
		}
	}
	return v
}

func formatValue(k kind, v reflect.Value) string {
	switch k {
	case kMillis:
		return fmt.Sprint(v.Interface().(time.Duration).Milliseconds())
	case kSeconds:
		return fmt.Sprint(v.Interface().(time.Duration).Seconds())
	case kMinutes:
		return fmt.Sprint(v.Interface().(time.Duration).Minutes())
	case kHours:
		return fmt.Sprint(v.Interface().(time.Duration).Hours())
	case kNotBool:
		return fmt.Sprint(!v.Bool())
	case kSecondsList:
		return fmt.Sprintf("[%v]", v.Interface().(time.Duration).Seconds())
	case kString:
		return fmt.Sprintf("%q", v.String())
	case kStrings:
		return fmt.Sprintf("%q", v.Interface())
	case kAPIKeys:
		return fmt.Sprintf("%d keys", v.Len())
	case kFloat:
		f := v.Float()
		if f == math.Trunc(f) {
			return fmt.Sprintf("%.1f", f)
		}
		return fmt.Sprint(f)
	}
	return fmt.Sprint(v.Interface())
}

// toAPIKeys converts an array of api_keys tables (from [[...]] or an inline array) into APIKey
// values, rejecting unknown fields; strings may hold placeholders.
func toAPIKeys(raw any, getenv func(string) string) ([]APIKey, error) {
	var items []map[string]any
	switch v := raw.(type) {
	case []map[string]any:
		items = v
	case []any:
		for i, it := range v {
			m, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("element %d: %w", i, typeErr("a table", it))
			}
			items = append(items, m)
		}
	default:
		return nil, typeErr("an array of tables", raw)
	}
	out := make([]APIKey, 0, len(items))
	for i, m := range items {
		var k APIKey
		for name, val := range m {
			var err error
			switch name {
			case "key":
				var x any
				if x, err = convert(kString, val, getenv); err == nil {
					k.Key = x.(string)
				}
			case "description":
				var x any
				if x, err = convert(kString, val, getenv); err == nil {
					k.Description = x.(string)
				}
			case "permissions":
				var x any
				if x, err = convert(kStrings, val, getenv); err == nil {
					k.Permissions = x.([]string)
				}
			default:
				err = errors.New("unknown field (want key, permissions, description)")
			}
			if err != nil {
				return nil, fmt.Errorf("element %d: %s: %w", i, name, err)
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// authEntries are the keys of a web auth section (tasker-core's orchestration.web.auth and
// worker.web.auth), setting the WebAuth at field; what names the routes it protects.
func authEntries(prefix, field, what string) []entry {
	e := func(key string, k kind, sub, meaning string) entry {
		return entry{Key: prefix + "." + key, field: field + "." + sub, kind: k, Meaning: meaning}
	}
	pub := e("jwt_public_key", kString, "JWTPublicKey",
		"PEM RSA public key (PKIX or PKCS#1) verifying tokens. With neither this nor the path, bearer tokens get 401.")
	pub.Env = "TASKER_JWT_PUBLIC_KEY"
	path := e("jwt_public_key_path", kString, "JWTPublicKeyPath",
		"File holding the PEM public key; wins over jwt_public_key. Read at start; unreadable, the process does not start.")
	path.Env = "TASKER_JWT_PUBLIC_KEY_PATH"
	keys := e("api_keys", kAPIKeys, "APIKeys", "`[["+prefix+".api_keys]]` tables: `key`, `permissions` (e.g. `[\"tasks:read\", \"dlq:*\"]`), `description` (the caller's name in logs).")
	keys.defaultDoc = "[]"
	return []entry{
		e("enabled", kBool, "Enabled", "Require an API key or a JWT bearer token carrying the route's permission on "+what+
			" (401/403 otherwise). Off, they are open, and a non-loopback bind_address logs a warning at start."),
		e("jwt_issuer", kString, "JWTIssuer", "The `iss` a token must carry."),
		e("jwt_audience", kString, "JWTAudience", "The `aud` (a string) a token must carry."),
		e("jwt_verification_method", kString, "JWTVerificationMethod",
			"`public_key`: tokens are RS256, verified with the configured public key (tasker-core's `jwks` is not supported)."),
		pub, path,
		e("api_key_header", kString, "APIKeyHeader", "Request header carrying an API key (used when there is no `Authorization: Bearer`)."),
		e("api_keys_enabled", kBool, "APIKeysEnabled", "Accept the keys of api_keys."),
		keys,
		e("api_key", kString, "APIKey", "Legacy single key, used when api_keys is off or empty; as in tasker-core it is granted `*`, "+
			"which matches no permission: with strict_validation the start fails (tasker-core answers 401), else every route answers 403."),
		e("strict_validation", kBool, "StrictValidation", "Refuse (401) a token or key carrying a permission outside the vocabulary; "+
			"an api_keys entry with one fails the start (ours: tasker-core fails each request)."),
		e("log_unknown_permissions", kBool, "LogUnknownPermissions", "Log credentials carrying unknown permissions."),
	}
}
