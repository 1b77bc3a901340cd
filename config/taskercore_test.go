package config

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const fixtureDir = "testdata/taskercore"

// taskerCoreMirror is tasker-core's git directory on development machines; tests that read
// tasker-core's own files skip without it (TASKER_CORE_MIRROR overrides the path).
func taskerCoreMirror(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TASKER_CORE_MIRROR")
	if dir == "" {
		dir = "/work/.mirror/tasker-systems+tasker-core/repo"
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("tasker-core's repository is not at %s (set TASKER_CORE_MIRROR): its own config files are not tested", dir)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: tasker-core's config files cannot be read from the mirror")
	}
	return dir
}

// extractTaskerCoreConfig writes tasker-core's config/tasker tree (HEAD) under a temporary
// directory and returns that config/tasker directory.
func extractTaskerCoreConfig(t *testing.T) string {
	t.Helper()
	repo := taskerCoreMirror(t)
	out, err := exec.Command("git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD", "config/tasker").Output()
	if err != nil {
		t.Fatalf("git ls-tree: %v", err)
	}
	root := t.TempDir()
	n := 0
	for _, name := range strings.Fields(string(out)) {
		if !strings.HasSuffix(name, ".toml") {
			continue
		}
		data, err := exec.Command("git", "-C", repo, "show", "HEAD:"+name).Output()
		if err != nil {
			t.Fatalf("git show %s: %v", name, err)
		}
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no config/tasker/**/*.toml in tasker-core's repository")
	}
	return filepath.Join(root, "config", "tasker")
}

// warnings loads with a logger capturing records and returns the config and the log text.
func loadLogged(t *testing.T, opts Options) (Config, string, error) {
	t.Helper()
	var buf bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	c, err := Load(opts)
	return c, buf.String(), err
}

// TestTaskerCoreFixtureFile loads a merged tasker-core worker file: its keys with a meaning here
// reach their fields, the others are listed once, as one warning.
func TestTaskerCoreFixtureFile(t *testing.T) {
	env := envOf(map[string]string{"DATABASE_URL": testDB, "TASKER_WEB_BIND_ADDRESS": "127.0.0.1:9999"})
	c, logged, err := loadLogged(t, Options{Path: filepath.Join(fixtureDir, "worker-test.toml"), Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	w := c.Worker
	if c.Database.URL != testDB || c.Database.MaxConns != 30 {
		t.Errorf("database = %+v", c.Database)
	}
	if w.Concurrency != 5 || w.StepTimeout != 5*time.Second || w.BatchSize != 20 || w.VisibilityTimeout != 30*time.Second {
		t.Errorf("worker = %+v", w)
	}
	if w.PollInterval != 500*time.Millisecond || c.via[keyWorkerPoll] != "worker.event_systems.worker.metadata.fallback_poller.polling_interval_ms" {
		t.Errorf("poll interval %s via %q", w.PollInterval, c.via[keyWorkerPoll])
	}
	if len(w.Namespaces) != 0 || !strings.HasPrefix(w.WorkerID, "worker_") {
		t.Errorf("namespaces %q, worker id %q", w.Namespaces, w.WorkerID)
	}
	if c.WorkerWeb != (Web{Enabled: true, BindAddress: "127.0.0.1:9999"}) || c.WorkerAuth.JWTIssuer != "tasker-worker" {
		t.Errorf("web %+v auth %+v", c.WorkerWeb, c.WorkerAuth)
	}
	if b := c.Orchestration.Backoff; b.Base != time.Second || b.Max != 10*time.Second || b.Multiplier != 2 || b.JitterPercent != 0.15 {
		t.Errorf("backoff = %+v", b)
	}
	for _, want := range []string{
		"common.circuit_breakers.*",
		"common.database.pool.acquire_timeout_seconds",
		"common.mpsc_channels.*",
		"common.queues.rabbitmq.*",
		"worker.grpc.*",
		"worker.mpsc_channels.handler_dispatch.dispatch_buffer_size",
		"worker.web.auth.jwt_private_key",
		`worker.worker_id ("test-worker-001" is not worker_<uuid>: a new id is used)`,
	} {
		if !slices.Contains(c.Ignored, want) {
			t.Errorf("Ignored lacks %q: %q", want, c.Ignored)
		}
	}
	for _, k := range c.Ignored {
		if byKey[k] != nil {
			t.Errorf("key %s is both used and ignored", k)
		}
	}
	if n := strings.Count(logged, "level=WARN"); n != 1 || !strings.Contains(logged, "worker.grpc.*") {
		t.Errorf("want one warning listing the ignored keys, got %d:\n%s", n, logged)
	}
}

// TestTaskerCoreLayering merges a configuration directory's base and environment files as
// tasker-core does: tables merge, the environment's values win, TASKER_ENV picks it.
func TestTaskerCoreLayering(t *testing.T) {
	base := map[string]string{"DATABASE_URL": testDB}
	load := func(env map[string]string, opts Options) Config {
		t.Helper()
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range env {
			m[k] = v
		}
		opts.Getenv = envOf(m)
		opts.Logger = slog.New(slog.DiscardHandler)
		c, err := Load(opts)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	test := load(map[string]string{"TASKER_ENV": "test"}, Options{Dir: fixtureDir})
	if len(test.Files) != 6 || !strings.HasSuffix(test.Files[5], filepath.Join("environments", "test", "worker.toml")) {
		t.Errorf("files = %q", test.Files)
	}
	// Overridden by the environment; kept from base where the environment's table is silent.
	if test.Worker.Concurrency != 5 || test.Worker.StepTimeout != 5*time.Second || test.Database.MaxConns != 30 {
		t.Errorf("test environment: %+v %+v", test.Worker, test.Database)
	}
	if test.Worker.BatchSize != 20 || test.Orchestration.Staleness.BatchSize != 100 {
		t.Errorf("base values lost: batch %d, staleness batch %d", test.Worker.BatchSize, test.Orchestration.Staleness.BatchSize)
	}
	if s := test.Orchestration.Staleness; s.WaitingForDependencies != 5*time.Minute || s.TaskMaxLifetime != 24*time.Hour {
		t.Errorf("staleness = %+v", s)
	}
	if test.Orchestration.PollInterval != time.Second || test.Orchestration.Backoff.Max != 10*time.Second {
		t.Errorf("orchestration = %+v", test.Orchestration)
	}
	if test.Worker.PollInterval != 500*time.Millisecond {
		t.Errorf("poll interval = %s", test.Worker.PollInterval)
	}

	dev := load(nil, Options{Dir: fixtureDir}) // TASKER_ENV unset: development
	if dev.Worker.Concurrency != 8 || dev.Database.MaxConns != 25 || dev.Worker.PollInterval != time.Second {
		t.Errorf("development: concurrency %d, pool %d, poll %s", dev.Worker.Concurrency, dev.Database.MaxConns, dev.Worker.PollInterval)
	}
	viaEnv := load(map[string]string{"TASKER_CONFIG_DIR": fixtureDir, "TASKER_ENV": "test"}, Options{})
	if viaEnv.Worker.Concurrency != 5 {
		t.Errorf("TASKER_CONFIG_DIR: concurrency %d", viaEnv.Worker.Concurrency)
	}
	// --config is layered last.
	over := writeTOML(t, "[worker.mpsc_channels.handler_dispatch]\nmax_concurrent_handlers = 7\n")
	top := load(nil, Options{Dir: fixtureDir, Environment: "test", Path: over})
	if top.Worker.Concurrency != 7 || top.File != over || top.Database.MaxConns != 30 {
		t.Errorf("--config over --config-dir: concurrency %d, file %q", top.Worker.Concurrency, top.File)
	}

	_, err := Load(Options{Dir: fixtureDir, Environment: "staging", Getenv: envOf(base)})
	if texts := errorTexts(t, err); !strings.Contains(texts[0], `for environment "staging"`) {
		t.Errorf("missing environment: %q", texts)
	}
	_, err = Load(Options{Dir: t.TempDir(), Getenv: envOf(base)})
	if texts := errorTexts(t, err); !strings.HasPrefix(texts[0], "config: --config-dir: no ") {
		t.Errorf("empty directory: %q", texts)
	}
}

// TestTaskerCoreStrictWhereMapped keeps rejecting typos in sections tasker-go reads, and values
// of tasker-core keys it cannot honour.
func TestTaskerCoreStrictWhereMapped(t *testing.T) {
	body := `
[common.database]
url = "postgres://x/y"

[common.database.pool]
max_conections = 10

[common.queues]
backend = "rabbitmq"

[common.pgmq_database]
url = "postgres://other/pgmq"

[common.circuit_breakers.default_config]
failure_treshold = 5

[worker.web]
request_timout_ms = 1
`
	c, err := Load(Options{Path: writeTOML(t, body), Getenv: envOf(nil)})
	texts := errorTexts(t, err)
	for _, want := range []string{
		"config: common.database.pool.max_conections: unknown key (did you mean common.database.pool.max_connections?)",
		"config: common.queues.backend: rabbitmq is not supported: tasker-go uses pgmq",
		"config: common.pgmq_database.url: a separate PGMQ database is not supported: tasker-go reads its queues from common.database.url",
		"config: worker.web.request_timout_ms: unknown key (did you mean worker.web.request_timeout_ms?)",
	} {
		if !containsText(texts, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(texts, "\n"))
		}
	}
	if len(texts) != 4 {
		t.Errorf("errors:\n%s", strings.Join(texts, "\n"))
	}
	// A key unknown to both, in a section only tasker-core has (a newer tasker-core's), is ignored.
	if !slices.Contains(c.Ignored, "common.circuit_breakers.*") {
		t.Errorf("Ignored = %q", c.Ignored)
	}

	// The PGMQ database may name the main one; the backend may come from a placeholder.
	ok := "[common.database]\nurl = \"postgres://x/y\"\n[common.pgmq_database]\nurl = \"${PGMQ_DATABASE_URL:-postgres://x/y}\"\n" +
		"[common.queues]\nbackend = \"${TASKER_MESSAGING_BACKEND:-pgmq}\"\n"
	if _, err := Load(Options{Path: writeTOML(t, ok), Getenv: envOf(nil)}); err != nil {
		t.Fatal(err)
	}
	_, err = Load(Options{Path: writeTOML(t, ok), Getenv: envOf(map[string]string{"TASKER_MESSAGING_BACKEND": "rabbitmq"})})
	if texts := errorTexts(t, err); !containsText(texts, "config: common.queues.backend: rabbitmq is not supported: tasker-go uses pgmq") {
		t.Errorf("errors = %q", texts)
	}
}

// TestTaskerCoreKeyTable checks taskerCoreKeys against tasker-core's files, when they are on
// this machine: every key they hold is known.
func TestTaskerCoreKeyTable(t *testing.T) {
	dir := extractTaskerCoreConfig(t)
	known := map[string]bool{}
	for _, k := range taskerCoreKeys {
		known[k] = true
	}
	var walk func(prefix string, m map[string]any)
	var missing []string
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if k == "_docs" {
				continue
			}
			key := prefix + k
			if sub, ok := v.(map[string]any); ok {
				walk(key+".", sub)
			} else if !known[key] {
				missing = append(missing, key)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.toml"))
	more, _ := filepath.Glob(filepath.Join(dir, "environments", "*", "*.toml"))
	for _, f := range append(files, more...) {
		var raw map[string]any
		if _, err := toml.DecodeFile(f, &raw); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk("", raw)
	}
	if len(missing) > 0 {
		t.Errorf("tasker-core keys missing from taskerCoreKeys (update config/taskercore_keys.go): %q", missing)
	}
}

// TestTaskerCoreOwnFiles loads every generated file of tasker-core and its configuration
// directory in each environment, unchanged.
func TestTaskerCoreOwnFiles(t *testing.T) {
	dir := extractTaskerCoreConfig(t)
	env := envOf(map[string]string{"DATABASE_URL": testDB})
	generated, _ := filepath.Glob(filepath.Join(dir, "generated", "*.toml"))
	if len(generated) == 0 {
		t.Fatal("no generated files")
	}
	for _, f := range generated {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, logged, err := loadLogged(t, Options{Path: f, Getenv: env})
			if err != nil {
				t.Fatal(err)
			}
			if c.Database.URL != testDB || len(c.Ignored) == 0 || strings.Count(logged, "level=WARN") != 1 {
				t.Errorf("url %q, %d ignored, log:\n%s", c.Database.URL, len(c.Ignored), logged)
			}
		})
	}
	for _, name := range []string{"test", "development", "production"} {
		t.Run("dir/"+name, func(t *testing.T) {
			c, _, err := loadLogged(t, Options{Dir: dir, Environment: name, Getenv: env})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(c.Ignored, "*._docs (documentation tables)") {
				t.Errorf("Ignored = %q", c.Ignored)
			}
		})
	}
}

// TestEffectiveRedactsSecrets prints every setting with its source and never a password, an API
// key or a JWT key.
func TestEffectiveRedactsSecrets(t *testing.T) {
	body := `
[common.database]
url = "postgres://tasker:s3cret@db:5432/tasker?sslmode=disable"

[orchestration.web.auth]
enabled = true
api_key = "legacy-s3cret"
jwt_public_key = "-----BEGIN PUBLIC KEY-----s3cret"
api_keys_enabled = true
api_keys = [{key = "k-s3cret", permissions = ["tasks:*"]}]

[worker.event_systems.worker.metadata.fallback_poller]
polling_interval_ms = 700
`
	c, err := Load(Options{Path: writeTOML(t, body), Getenv: envOf(nil), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Setting{}
	var all strings.Builder
	for _, s := range c.Effective() {
		got[s.Key] = s
		all.WriteString(s.Key + " = " + s.Value + " # " + s.Source + "\n")
	}
	if strings.Contains(all.String(), "s3cret") {
		t.Fatalf("a secret was printed:\n%s", all.String())
	}
	for key, want := range map[string]Setting{
		keyDatabaseURL:                          {Value: `"postgres://tasker:xxxxx@db:5432/tasker?sslmode=disable"`, Source: "file"},
		"orchestration.web.auth.api_key":        {Value: Redacted, Source: "file"},
		"orchestration.web.auth.jwt_public_key": {Value: Redacted, Source: "file"},
		"orchestration.web.auth.api_keys":       {Value: "1 keys", Source: "file"},
		"worker.web.auth.api_key":               {Value: `""`, Source: "default"},
		keyWorkerPoll:                           {Value: "700", Source: "file via worker.event_systems.worker.metadata.fallback_poller.polling_interval_ms"},
		"common.queues.backend":                 {Value: `"pgmq"`, Source: "default"},
	} {
		want.Key = key
		if got[key] != want {
			t.Errorf("%s: got %+v, want %+v", key, got[key], want)
		}
	}
	if RedactURL("host=db user=u password='a b' dbname=t") != "host=db user=u password=xxxxx dbname=t" {
		t.Errorf("keyword DSN: %q", RedactURL("host=db user=u password='a b' dbname=t"))
	}
}
