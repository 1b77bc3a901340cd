package integration

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/internal/cli"
)

// taskerCoreFixtures holds the small tasker-core-style files of the config package's tests.
const taskerCoreFixtures = "../config/testdata/taskercore"

// taskerCoreConfig returns tasker-core's config/tasker directory, extracted from its repository
// on this machine, or "" (with the reason logged) when the repository is not there.
func taskerCoreConfig(t *testing.T) string {
	t.Helper()
	repo := os.Getenv("TASKER_CORE_MIRROR")
	if repo == "" {
		repo = "/work/.mirror/tasker-systems+tasker-core/repo"
	}
	if _, err := os.Stat(repo); err != nil {
		t.Logf("tasker-core's repository is not at %s (set TASKER_CORE_MIRROR): using the fixtures only", repo)
		return ""
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Log("git is not installed: using the fixtures only")
		return ""
	}
	out, err := exec.Command("git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD", "config/tasker").Output()
	if err != nil {
		t.Fatalf("git ls-tree: %v", err)
	}
	root := t.TempDir()
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
	}
	return filepath.Join(root, "config", "tasker")
}

// syncBuffer is a bytes.Buffer safe for a running command and the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runTasker(ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	var out, errOut syncBuffer
	code := cli.Main(ctx, "tasker", args, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errOut.String()
}

// TestConfigValidateCommand runs `tasker config validate` on tasker-core's files (fixtures, and
// tasker-core's own generated files and directory when its repository is here).
func TestConfigValidateCommand(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://tasker:s3cret@db:5432/tasker"}
	check := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out, errOut := runTasker(context.Background(), env, append([]string{"config", "validate"}, args...)...)
		if code != cli.ExitOK {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if strings.Contains(out, "s3cret") || !strings.Contains(out, `common.database.url = "postgres://tasker:xxxxx@db:5432/tasker"`) {
			t.Errorf("database URL not redacted:\n%s", out)
		}
		if !strings.Contains(out, "# ignored tasker-core keys (") || !strings.Contains(out, "#   worker.grpc.*") && !strings.Contains(out, "#   orchestration.grpc.*") {
			t.Errorf("no ignored keys listed:\n%s", out)
		}
		return out
	}
	out := check(t, "--config", filepath.Join(taskerCoreFixtures, "worker-test.toml"))
	if !strings.Contains(out, "worker.mpsc_channels.handler_dispatch.max_concurrent_handlers = 5") {
		t.Errorf("file value not shown:\n%s", out)
	}
	out = check(t, "--config-dir", taskerCoreFixtures, "--env", "test")
	if !strings.Contains(out, "worker.mpsc_channels.handler_dispatch.max_concurrent_handlers = 5") ||
		!strings.Contains(out, "environments/test/worker.toml") {
		t.Errorf("test environment not layered:\n%s", out)
	}

	typo := filepath.Join(t.TempDir(), "typo.toml")
	if err := os.WriteFile(typo, []byte("[common.database.pool]\nmax_conections = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runTasker(context.Background(), env, "config", "validate", "--config", typo)
	if code != cli.ExitConfig || !strings.Contains(errOut, "did you mean common.database.pool.max_connections?") {
		t.Errorf("typo: exit %d, %s", code, errOut)
	}

	dir := taskerCoreConfig(t)
	if dir == "" {
		return
	}
	generated, _ := filepath.Glob(filepath.Join(dir, "generated", "*.toml"))
	if len(generated) == 0 {
		t.Fatal("no generated files in tasker-core's repository")
	}
	for _, f := range generated {
		t.Run(filepath.Base(f), func(t *testing.T) { check(t, "--config", f) })
	}
	for _, name := range []string{"test", "development", "production"} {
		t.Run("config-dir/"+name, func(t *testing.T) { check(t, "--config-dir", dir, "--env", name) })
	}
}

// TestConfigFilesWorkerStarts starts `tasker worker --config worker-test.toml` (tasker-core's own
// file when its repository is here, else the fixture) against a real database, sees it serve
// /health, and stops it.
func TestConfigFilesWorkerStarts(t *testing.T) {
	file := filepath.Join(taskerCoreFixtures, "worker-test.toml")
	if dir := taskerCoreConfig(t); dir != "" {
		file = filepath.Join(dir, "generated", "worker-test.toml")
	}
	url, pool := testdb.New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	env := map[string]string{
		"DATABASE_URL":            url,
		"TASKER_WEB_BIND_ADDRESS": addr, // the file's ${TASKER_WEB_BIND_ADDRESS:-0.0.0.0:8081}
		"TASKER_NAMESPACES":       "cfg_files",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runTasker(ctx, env, "worker", "--config", file)
		done <- result{code, out, errOut}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case r := <-done:
			t.Fatalf("worker exited with %d before serving /health\n%s%s", r.code, r.out, r.errOut)
		default:
		}
		resp, err := http.Get("http://" + addr + "/health")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not serve /health on %s within 30s (last error %v)", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The worker creates its namespace's queue as it starts consuming.
	for exists := false; !exists; time.Sleep(100 * time.Millisecond) {
		if err := pool.QueryRow(context.Background(),
			`SELECT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'worker_cfg_files_queue')`).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists && time.Now().After(deadline) {
			t.Fatal("the worker did not create worker_cfg_files_queue within 30s")
		}
	}
	cancel()
	select {
	case r := <-done:
		if r.code != cli.ExitOK {
			t.Fatalf("worker exit %d\n%s%s", r.code, r.out, r.errOut)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("worker did not stop within 45s of cancellation")
	}
}
