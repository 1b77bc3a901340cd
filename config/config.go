// Package config loads the configuration of a tasker-go process (worker and/or orchestrator)
// from built-in defaults, an optional TOML file whose keys mirror tasker-core's where they apply,
// environment variables and, last, command-line flags applied by the caller.
//
// Precedence, lowest first:
//
//  1. built-in defaults (tasker-core's where a key exists there);
//  2. the TOML files: a tasker-core configuration directory (Options.Dir, --config-dir or
//     TASKER_CONFIG_DIR: base/*.toml, then environments/$TASKER_ENV/*.toml), then the file named
//     by Options.Path (--config) or TASKER_CONFIG_PATH, merged as tasker-core merges them;
//     string values may hold ${VAR} and ${VAR:-default} placeholders, substituted from the
//     environment as tasker-core does;
//  3. environment variables (see Keys: the ones worker.Config.FromEnv reads, plus a few for the
//     web server and telemetry);
//  4. Options.Apply, where the CLI sets its flags.
//
// tasker-core's own files load unchanged: keys of its schema without a meaning here (FFI
// channels, circuit breakers, RabbitMQ, gRPC, ...) are accepted and reported as Config.Ignored.
// Other unknown keys, values of the wrong type and out-of-range values are rejected, each error
// naming the full key (and the variable or flag when the value came from there), e.g.
//
//	config: worker.mpsc_channels.handler_dispatch.max_concurrent_handlers: -1 is outside 1..10000
//
// Every key, its variable, default and meaning are listed by Keys and MarkdownTable.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/worker"
)

// Config is a loaded configuration. Worker and Orchestration are the components' own
// configurations, complete and valid for worker.New and orchestration.New; the other parts are
// read by the process that runs them (the CLI): where to connect, which templates to register,
// the web servers and tracing.
//
// Orchestration.DefaultStepTimeout and Orchestration.DBTimeout follow Worker.StepTimeout and
// Worker.DBTimeout (one key each), so both sides of a deployment sharing a file agree on them.
type Config struct {
	// Database says where a process connects and how (common.database.*).
	Database Database
	// TemplatePath is a directory of task template YAML files a worker registers at start
	// (worker.template_path); empty registers none.
	TemplatePath string
	// Worker configures a worker (common.queues and worker.* keys).
	Worker worker.Config
	// WorkerWeb configures the worker's HTTP server (worker.web.*).
	WorkerWeb Web
	// WorkerAuth configures authentication of the worker's /v1/templates (worker.web.auth.*).
	WorkerAuth WebAuth
	// Orchestration configures the Go orchestrator (orchestration.* and common.backoff.*).
	// Its ProcessorUUID is uuid.Nil unless set: orchestration.New then picks a new one.
	Orchestration orchestration.Config
	// OrchestrationWeb configures the orchestrator's HTTP server (orchestration.web.*).
	OrchestrationWeb Web
	// OrchestrationAuth configures authentication of the orchestrator's /v1 API and /config
	// (orchestration.web.auth.*); api.AuthConfig is this type.
	OrchestrationAuth WebAuth
	// Telemetry configures OpenTelemetry tracing (telemetry.*).
	Telemetry Telemetry
	// File is the TOML file named by --config or TASKER_CONFIG_PATH; empty when none was.
	File string
	// Files are every TOML file loaded, in layering order (a configuration directory's base and
	// environment files, then File).
	Files []string
	// Ignored lists the keys of tasker-core's schema the files set that tasker-go does not use
	// (sorted; a table is written "table.*"). Load logs them as one warning.
	Ignored []string

	// sources maps every key not at its default to where its value came from: fromFileMark,
	// an environment variable's name, or "flag".
	sources map[string]string
	// via maps a key whose value was taken from a common.* fallback key to that key.
	via map[string]string
}

// Web configures an HTTP server for health, metrics and the templates API.
type Web struct {
	Enabled     bool
	BindAddress string // host:port
}

// WebAuth is tasker-core's web auth configuration: API keys and RS256 JWT bearer tokens whose
// permissions are checked per route. Disabled, every request is allowed.
type WebAuth struct {
	Enabled bool
	// JWTIssuer and JWTAudience are the iss and aud a token must carry.
	JWTIssuer   string
	JWTAudience string
	// JWTVerificationMethod is "public_key", the only method supported (tasker-core also has
	// "jwks").
	JWTVerificationMethod string
	// JWTPublicKey is the PEM public key verifying tokens; JWTPublicKeyPath, when set, names a
	// file holding it and wins. With neither, bearer tokens are refused.
	JWTPublicKey     string
	JWTPublicKeyPath string
	// APIKeyHeader is the request header carrying an API key (default X-API-Key).
	APIKeyHeader string
	// APIKeysEnabled turns on APIKeys; when it is off or APIKeys is empty, the legacy APIKey
	// (if set) is the only key, granting "*" as tasker-core does, which matches no permission.
	APIKeysEnabled bool
	APIKeys        []APIKey
	APIKey         string
	// StrictValidation refuses credentials carrying a permission outside the vocabulary;
	// LogUnknownPermissions logs them.
	StrictValidation      bool
	LogUnknownPermissions bool
}

// APIKey is one configured API key and the permissions it grants; Description names the caller
// in logs.
type APIKey struct {
	Key         string
	Permissions []string
	Description string
}

// Database is where a process connects (URL, pool size) and the server-side bounds set on every
// connection (see db.Session); the per-call deadline of the worker's and orchestrator's loops is
// Worker.DBTimeout.
type Database struct {
	// URL is the PostgreSQL URL of the tasker schema and PGMQ (required).
	URL string
	// MaxConns is the pool size; 0 means the process's own default.
	MaxConns         int
	StatementTimeout time.Duration
	LockTimeout      time.Duration
}

// Telemetry configures tracing. Exporter is "stdout" or "otlp"; Endpoint is the OTLP/HTTP
// collector URL (empty: the exporter's default, or OTEL_EXPORTER_OTLP_ENDPOINT).
type Telemetry struct {
	Enabled     bool
	ServiceName string
	Exporter    string
	Endpoint    string
}

// Default returns the built-in defaults (a fresh worker id; no database URL; no processor UUID).
func Default() Config {
	w := worker.DefaultConfig()
	o := orchestration.DefaultConfig()
	o.ProcessorUUID = uuid.Nil
	o.DefaultStepTimeout, o.DBTimeout = w.StepTimeout, w.DBTimeout
	return Config{
		Database:          Database{StatementTimeout: 60 * time.Second, LockTimeout: 15 * time.Second},
		Worker:            w,
		WorkerWeb:         Web{Enabled: true, BindAddress: "0.0.0.0:8081"},
		WorkerAuth:        defaultAuth("tasker-worker", "worker-api"),
		Orchestration:     o,
		OrchestrationWeb:  Web{Enabled: true, BindAddress: "0.0.0.0:8080"},
		OrchestrationAuth: defaultAuth("tasker-core", "tasker-api"),
		Telemetry: Telemetry{
			ServiceName: "tasker-go",
			Exporter:    ExporterStdout,
		},
	}
}

// defaultAuth is tasker-core's disabled auth section with issuer iss and audience aud.
func defaultAuth(iss, aud string) WebAuth {
	return WebAuth{JWTIssuer: iss, JWTAudience: aud, JWTVerificationMethod: "public_key",
		APIKeyHeader: "X-API-Key", StrictValidation: true, LogUnknownPermissions: true}
}

// Telemetry exporters.
const (
	ExporterStdout = "stdout"
	ExporterOTLP   = "otlp"
)

// Options tell Load where to look.
type Options struct {
	// Path is the TOML file (the --config flag). Empty: TASKER_CONFIG_PATH; empty too: no file.
	// With Dir, it is layered over the directory's files.
	Path string
	// Dir is a tasker-core configuration directory (the --config-dir flag; empty:
	// TASKER_CONFIG_DIR): its base/*.toml then environments/<Environment>/*.toml are merged as
	// tasker-core merges them (tables merge, later values win).
	Dir string
	// Environment selects Dir's environment (default TASKER_ENV, else DefaultEnvironment).
	Environment string
	// Logger receives the warning listing ignored keys (default slog.Default()).
	Logger *slog.Logger
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// Apply runs after the environment overlay and before validation; the CLI sets its flags
	// here, so they win over everything else.
	Apply func(*Config) error
}

// Error names the key whose value is wrong and, when the value did not come from the file or
// the defaults, where it came from (an environment variable or "flag").
type Error struct {
	Key     string
	From    string
	Message string
}

// Error is "config: <key>[ (from <source>)]: <message>".
func (e *Error) Error() string {
	if e.From != "" {
		return fmt.Sprintf("config: %s (from %s): %s", e.Key, e.From, e.Message)
	}
	return fmt.Sprintf("config: %s: %s", e.Key, e.Message)
}

// Load builds the configuration: defaults, then the TOML files, then the environment, then
// opts.Apply, then Validate. The error joins every problem found (each an *Error). The keys of
// tasker-core's schema that the files set and tasker-go does not use are logged once, as one
// warning, and returned in Config.Ignored.
func Load(opts Options) (Config, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Default()
	c.sources = map[string]string{}
	c.via = map[string]string{}

	files, err := configFiles(opts, getenv)
	if err != nil {
		return c, err
	}
	if len(files) > 0 {
		merged := map[string]any{}
		for _, f := range files {
			data, err := os.ReadFile(f.path)
			if err != nil {
				return c, &Error{Key: f.from, Message: err.Error()}
			}
			raw, err := parseTOML(f.path, string(data))
			if err != nil {
				return c, err
			}
			mergeTOML(merged, raw)
			c.Files = append(c.Files, f.path)
		}
		if path := files[len(files)-1]; path.from != fromDir {
			c.File = path.path
		}
		ignored, err := decodeTOML(&c, merged, getenv)
		c.Ignored = ignored
		if err != nil {
			return c, err
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	if opts.Apply != nil {
		before := c
		before.Worker.Namespaces = append([]string(nil), c.Worker.Namespaces...)
		if err := opts.Apply(&c); err != nil {
			return c, err
		}
		c.markChanged(before, "flag")
	}
	c.link()
	if err := c.Validate(); err != nil {
		return c, err
	}
	if len(c.Ignored) > 0 {
		log := opts.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Warn("config: tasker-core settings without a meaning in tasker-go are ignored",
			"count", len(c.Ignored), "keys", strings.Join(c.Ignored, ", "))
	}
	return c, nil
}

// fromDir marks a file found in Options.Dir.
const fromDir = "--config-dir"

type configFile struct{ path, from string }

// configFiles lists the files to load, in layering order: Dir's base/*.toml, then
// environments/<env>/*.toml (each set in name order), then Path.
func configFiles(opts Options, getenv func(string) string) ([]configFile, error) {
	var files []configFile
	dir, from := opts.Dir, fromDir
	if dir == "" {
		dir, from = strings.TrimSpace(getenv("TASKER_CONFIG_DIR")), "TASKER_CONFIG_DIR"
	}
	if dir != "" {
		envName := opts.Environment
		if envName == "" {
			envName = strings.TrimSpace(getenv("TASKER_ENV"))
		}
		if envName == "" {
			envName = DefaultEnvironment
		}
		base, _ := filepath.Glob(filepath.Join(dir, "base", "*.toml"))
		if len(base) == 0 {
			return nil, &Error{Key: from, Message: fmt.Sprintf("no %s", filepath.Join(dir, "base", "*.toml"))}
		}
		envDir := filepath.Join(dir, "environments", envName)
		if st, err := os.Stat(envDir); err != nil || !st.IsDir() {
			return nil, &Error{Key: from, Message: fmt.Sprintf("no directory %s for environment %q (TASKER_ENV)", envDir, envName)}
		}
		envFiles, _ := filepath.Glob(filepath.Join(envDir, "*.toml"))
		for _, p := range append(base, envFiles...) { // Glob sorts each list
			files = append(files, configFile{p, fromDir})
		}
	}
	path, pathFrom := opts.Path, "--config"
	if path == "" {
		path, pathFrom = strings.TrimSpace(getenv("TASKER_CONFIG_PATH")), "TASKER_CONFIG_PATH"
	}
	if path != "" {
		files = append(files, configFile{path, pathFrom})
	}
	return files, nil
}

// DefaultEnvironment is the environment layered over a configuration directory's base files
// when neither Options.Environment nor TASKER_ENV names one (tasker-core's default).
const DefaultEnvironment = "development"

// applyEnv overlays the environment: worker.Config.FromEnv for the worker's variables, then the
// variables of the other keys.
func (c *Config) applyEnv(getenv func(string) string) error {
	var errs []error
	w, err := c.Worker.FromEnv(getenv)
	for _, e := range flatten(err) {
		var ce *worker.ConfigError
		if errors.As(e, &ce) {
			errs = append(errs, &Error{Key: c.keyForEnv(ce.Key), From: ce.Key, Message: ce.Message})
		} else {
			errs = append(errs, e)
		}
	}
	c.Worker = w
	for i := range table {
		e := &table[i]
		if e.Env == "" {
			continue
		}
		v := strings.TrimSpace(getenv(e.Env))
		if v == "" {
			continue
		}
		if !strings.HasPrefix(e.field, "Worker.") {
			if err := e.setValue(c, v, nil); err != nil { // environment values are not expanded
				errs = append(errs, &Error{Key: e.Key, From: e.Env, Message: err.Error()})
				continue
			}
		}
		c.sources[e.Key] = e.Env
	}
	return errors.Join(errs...)
}

// link copies the worker settings the orchestrator shares (see Config) onto it.
func (c *Config) link() {
	c.Orchestration.DefaultStepTimeout = c.Worker.StepTimeout
	c.Orchestration.DBTimeout = c.Worker.DBTimeout
}

// markChanged records src as the source of every key whose field differs from before.
func (c *Config) markChanged(before Config, src string) {
	if c.sources == nil {
		c.sources = map[string]string{}
	}
	seen := map[string]bool{}
	for i := range table {
		e := &table[i]
		if e.field == "" || seen[e.field] {
			continue
		}
		seen[e.field] = true
		if !reflect.DeepEqual(fieldOf(&before, e.field).Interface(), fieldOf(c, e.field).Interface()) {
			c.sources[e.Key] = src
		}
	}
}

// Validate reports every invalid setting at once, naming keys as Load does. Call it again after
// changing a loaded Config by hand.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, msg string) {
		name, from := c.describe(key)
		errs = append(errs, &Error{Key: name, From: from, Message: msg})
	}
	for _, e := range flatten(c.Worker.Validate()) {
		var ce *worker.ConfigError
		if errors.As(e, &ce) {
			key := c.keyForEnv(ce.Key)
			bad(key, ce.Message)
		} else {
			errs = append(errs, e)
		}
	}
	checkWeb := func(prefix string, w Web) {
		if !w.Enabled {
			return
		}
		if _, port, err := net.SplitHostPort(w.BindAddress); err != nil || port == "" {
			bad(prefix+".bind_address", fmt.Sprintf("%q is not host:port", w.BindAddress))
		}
	}
	checkWeb("worker.web", c.WorkerWeb)
	c.checkAuth("worker.web.auth", c.WorkerAuth, bad)
	if c.Database.URL == "" {
		bad(keyDatabaseURL, "required")
	}
	if c.Database.MaxConns < 0 {
		bad(keyMaxConns, "must not be negative")
	}

	t := c.Telemetry
	if t.Exporter != ExporterStdout && t.Exporter != ExporterOTLP {
		bad("telemetry.exporter", fmt.Sprintf("%q is not %s or %s", t.Exporter, ExporterStdout, ExporterOTLP))
	}
	if t.Enabled && strings.TrimSpace(t.ServiceName) == "" {
		bad("telemetry.service_name", "required when telemetry is enabled")
	}

	o := c.Orchestration
	minDur := func(key string, d, min time.Duration) {
		if d < min {
			bad(key, fmt.Sprintf("%s is below %s", d, min))
		}
	}
	minDur(keyStatementTimeout, c.Database.StatementTimeout, 0)
	minDur(keyLockTimeout, c.Database.LockTimeout, 0)
	intRange := func(key string, n, lo, hi int) {
		if n < lo || n > hi {
			bad(key, fmt.Sprintf("%d is outside %d..%d", n, lo, hi))
		}
	}
	minDur(keyOrchPoll, o.PollInterval, 10*time.Millisecond)
	minDur(keyOrchVT, o.VisibilityTimeout, time.Second)
	intRange(keyOrchBatch, o.ResultBatchSize, 1, 1000)
	intRange(keyOrchConcurrency, o.ResultConcurrency, 1, 1000)
	minDur(keyOrchReadiness, o.ReadinessInterval, 10*time.Millisecond)
	minDur(keyOrchRecovery, o.RecoveryInterval, 10*time.Millisecond)
	intRange(keyOrchSweepBatch, o.SweepBatchSize, 1, 10000)
	minDur(keyOrchStaleGrace, o.StaleGrace, 0)
	minDur(keyOrchStuck, o.StuckThreshold, time.Second)
	intRange(keyOrchMaxDecision, o.MaxDecisionSteps, 1, 100000)
	b := o.Backoff
	if b.Base <= 0 {
		bad(keyBackoffBase, "must be positive")
	}
	if b.Max < b.Base {
		bad(keyBackoffMax, fmt.Sprintf("%s is below the base backoff %s", b.Max, b.Base))
	}
	if b.Max > 7*24*time.Hour {
		bad(keyBackoffMax, fmt.Sprintf("%s is above 7 days", b.Max))
	}
	if b.Multiplier < 1 || b.Multiplier > 100 {
		bad(keyBackoffMultiplier, fmt.Sprintf("%g is outside 1..100", b.Multiplier))
	}
	if b.JitterPercent != orchestration.NoJitter && (b.JitterPercent < 0 || b.JitterPercent > 1) {
		bad(keyBackoffJitter, fmt.Sprintf("%g is outside 0..1", b.JitterPercent))
	}
	checkWeb("orchestration.web", c.OrchestrationWeb)
	c.checkAuth("orchestration.web.auth", c.OrchestrationAuth, bad)
	return errors.Join(errs...)
}

// checkAuth reports what makes an enabled auth configuration unusable; the permission names and
// the public key are checked when the API is built.
func (c Config) checkAuth(prefix string, a WebAuth, bad func(key, msg string)) {
	if !a.Enabled {
		return
	}
	if strings.TrimSpace(a.JWTIssuer) == "" {
		bad(prefix+".jwt_issuer", "required when auth is enabled")
	}
	if strings.TrimSpace(a.JWTAudience) == "" {
		bad(prefix+".jwt_audience", "required when auth is enabled")
	}
	if a.JWTVerificationMethod != "public_key" {
		bad(prefix+".jwt_verification_method", fmt.Sprintf("%q is not supported (only public_key)", a.JWTVerificationMethod))
	}
	if strings.TrimSpace(a.APIKeyHeader) == "" {
		bad(prefix+".api_key_header", "required when auth is enabled")
	}
	for i, k := range a.APIKeys {
		if k.Key == "" {
			bad(prefix+".api_keys", fmt.Sprintf("element %d: key is empty", i))
		}
	}
}

// keyForEnv maps a worker.ConfigError key (an environment variable name) to the TOML key of the
// same setting.
func (c Config) keyForEnv(env string) string {
	if e := entryByEnv(env); e != nil {
		return e.Key
	}
	return env
}

// describe returns the key to name in an error about key's setting, and where its value came
// from: a value taken from a common.* fallback is named by the fallback key.
func (c Config) describe(key string) (name, from string) {
	if src, ok := c.sources[key]; ok {
		return key, src
	}
	if v, ok := c.via[key]; ok {
		return v, c.sources[v]
	}
	return key, ""
}

// fromFileMark is the source recorded for a key set by the file; Error.From stays empty for it.
const fromFileMark = ""

// Source reports where key's value came from: "default", "file", "flag" or the environment
// variable's name.
func (c Config) Source(key string) string {
	src, ok := c.sources[key]
	switch {
	case !ok:
		return "default"
	case src == fromFileMark:
		return "file"
	}
	return src
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
