package cli

import (
	"bytes"
	"context"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// result is one run of the command line without a database.
type result struct {
	code           int
	stdout, stderr string
}

func noDatabaseEnv(stdout, stderr *bytes.Buffer) Env {
	return Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Getenv: func(string) string { return "" }, Version: "v9.8.7"}
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), "tasker", args, noDatabaseEnv(&out, &errOut))
	return result{code, out.String(), errOut.String()}
}

func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"}, {"help", "task"},
		{"templates", "--help"}, {"task", "--help"}, {"queue", "--help"},
		{"task", "status", "--help"}, {"task", "submit", "-h"}, {"worker", "--help"}, {"migrate", "--help"},
		{"task", "list", "-help"}, // the standard flag package's spelling
	} {
		r := run(t, args...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and the usage", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := run(t, "task", "submit", "--help"); !strings.Contains(r.stdout, "--idempotency-key") {
		t.Errorf("task submit --help lacks its flags:\n%s", r.stdout)
	}
	// No command at all prints the usage but is a bad command line.
	if r := run(t); r.code != ExitUsage || !strings.Contains(r.stdout, "Available Commands:") {
		t.Errorf("no arguments: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestBadCommandLinesExitTwoNamingTheProblem(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"tsk"}, "did you mean task?"},
		{[]string{"templates"}, "want a subcommand: list | register | validate"},
		{[]string{"templates", "bogus"}, `tasker templates: unknown command "bogus"`},
		{[]string{"task", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"queue", "stat"}, "did you mean stats?"},
		{[]string{"task", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"task", "list", "--state", "bogus"}, `invalid argument "bogus" for "--state" flag: want one of pending,`},
		{[]string{"task", "list", "-state", "bogus"}, `invalid argument "bogus" for "--state" flag`},
		{[]string{"task", "list", "--limit", "ten"}, `invalid argument "ten" for "--limit"`},
		{[]string{"task", "list", "extra"}, `unexpected argument(s) ["extra"]`},
		{[]string{"templates", "list", "dir"}, `unexpected argument(s) ["dir"]`},
		{[]string{"templates", "validate", "a", "b"}, "want at most one template directory"},
		{[]string{"task", "status"}, "want one task uuid, got 0 arguments"},
		{[]string{"task", "status", "not-a-uuid", "--json"}, `want a task uuid, got "not-a-uuid"`},
		{[]string{"task", "cancel", "a", "b"}, "want one task uuid, got 2 arguments"},
		{[]string{"worker", "--log-level", "loud"}, `invalid argument "loud" for "--log-level" flag: want one of debug, info, warn, error`},
		{[]string{"worker", "extra"}, `unexpected argument(s) ["extra"]`},
		{[]string{"migrate", "--check=maybe"}, `invalid argument "maybe" for "--check"`},
		{[]string{"version", "now"}, `unexpected argument(s) ["now"]`},
		{[]string{"completion", "tcsh"}, `unknown command "tcsh"`},
		{[]string{"task", "submit", "--namespace", "bad-ns", "--name", "x"}, "invalid namespace name \"bad-ns\""},
		{[]string{"task", "submit", "--name", "x", "--namespace", "ns", "--context", "{"}, "--context is not valid JSON"},
	} {
		r := run(t, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "--help' for usage") {
			t.Errorf("%q: exit %d, stderr %q; want %d naming %q", c.args, r.code, r.stderr, ExitUsage, c.want)
		}
	}
}

// TestFlagsAfterPositionalArguments runs the real command definitions with their RunE replaced
// by a probe, so that the parsed flags and arguments can be read without a database.
func TestFlagsAfterPositionalArguments(t *testing.T) {
	const id = "0190a4c4-7b3e-7000-8000-000000000001"
	for _, c := range []struct {
		args     []string
		flag     string
		wantArgs []string
	}{
		{[]string{"task", "status", id, "--json"}, "json", []string{id}},
		{[]string{"task", "status", "--json", id}, "json", []string{id}},
		{[]string{"task", "status", id, "-json"}, "json", []string{id}},
		{[]string{"task", "cancel", id, "--database-url", "postgres://x/y"}, "database-url", []string{id}},
		{[]string{"templates", "register", "dir", "--database-url=postgres://x/y"}, "database-url", []string{"dir"}},
	} {
		var out, errOut bytes.Buffer
		env := noDatabaseEnv(&out, &errOut).withDefaults()
		root := newRoot("tasker", env, nil)
		cmd, _, err := root.Find(c.args)
		if err != nil {
			t.Fatal(err)
		}
		var gotArgs []string
		var changed bool
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			gotArgs, changed = args, cmd.Flags().Changed(c.flag)
			return nil
		}
		if code := execute(context.Background(), root, c.args, env); code != ExitOK {
			t.Fatalf("%q: exit %d, stderr %q", c.args, code, errOut.String())
		}
		if !changed || strings.Join(gotArgs, " ") != strings.Join(c.wantArgs, " ") {
			t.Errorf("%q: --%s set %v, args %q; want set and %q", c.args, c.flag, changed, gotArgs, c.wantArgs)
		}
	}
}

// TestStateFlagAcceptsAlias checks --state takes every task state and the in_progress alias.
func TestStateFlagAcceptsAlias(t *testing.T) {
	var out, errOut bytes.Buffer
	env := noDatabaseEnv(&out, &errOut).withDefaults()
	for arg, want := range map[string]string{"complete": "complete", "in_progress": "steps_in_process"} {
		root := newRoot("tasker", env, nil)
		cmd, _, _ := root.Find([]string{"task", "list"})
		var got string
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			got = cmd.Flags().Lookup("state").Value.String()
			return nil
		}
		if code := execute(context.Background(), root, []string{"task", "list", "--state", arg}, env); code != ExitOK || got != want {
			t.Errorf("--state %s: exit %d, value %q; want %q", arg, code, got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if r := run(t, args...); r.code != ExitOK || r.stdout != "v9.8.7\n" {
			t.Errorf("%q: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	var out, errOut bytes.Buffer
	code := RunCommand(context.Background(), "tasker-worker", "worker", []string{"--version"}, noDatabaseEnv(&out, &errOut))
	if code != ExitOK || out.String() != "v9.8.7\n" {
		t.Errorf("tasker-worker --version: exit %d, stdout %q", code, out.String())
	}
	if ResolveVersion("v1.0.0") != "v1.0.0" || ResolveVersion("dev") == "" {
		t.Error("ResolveVersion")
	}
	for _, c := range []struct {
		info *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"}, {Key: "vcs.modified", Value: "true"}}},
			"dev (3f2a1b4c5d6e, modified)"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20260101120000-3f2a1b4c5d6e+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"}, {Key: "vcs.modified", Value: "true"}}},
			"v0.0.0-20260101120000-3f2a1b4c5d6e+dirty"},
	} {
		if got := versionFromBuildInfo(c.info); got != c.want {
			t.Errorf("versionFromBuildInfo(%+v) = %q, want %q", c.info.Main, got, c.want)
		}
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef tasker", "fish": "complete -c tasker"} {
		r := run(t, "completion", shell)
		if r.code != ExitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, stdout starts %q", shell, r.code, r.stdout[:min(len(r.stdout), 80)])
		}
	}
}

func TestSingleBinary(t *testing.T) {
	var out, errOut bytes.Buffer
	env := noDatabaseEnv(&out, &errOut)
	if code := RunCommand(context.Background(), "tasker-orchestrator", "orchestrator", []string{"--help"}, env); code != ExitOK ||
		!strings.Contains(out.String(), "tasker-orchestrator [flags]") || !strings.Contains(out.String(), "--readiness-interval") {
		t.Errorf("--help: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	errOut.Reset()
	// Without a database the configuration is invalid (exit 3), and says which key is missing.
	if code := RunCommand(context.Background(), "tasker-worker", "worker", []string{"--no-web"}, env); code != ExitConfig ||
		!strings.Contains(errOut.String(), "tasker-worker: config: common.database.url: required") {
		t.Errorf("no database: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := RunCommand(context.Background(), "tasker-worker", "worker", []string{"--concurrency", "0", "--database-url", "postgres://x/y"}, env); code != ExitConfig ||
		!strings.Contains(errOut.String(), "max_concurrent_handlers (from flag): 0 is outside 1..10000") {
		t.Errorf("bad flag value: exit %d, stderr %q", code, errOut.String())
	}
}

// TestRunFlagsReachConfig checks that the long-running commands' flags land in the component
// configurations, whichever side of other arguments they are on.
func TestRunFlagsReachConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	env := noDatabaseEnv(&out, &errOut).withDefaults()
	var rf runFlags
	cmd := &cobra.Command{Use: "dev", Args: noArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	rf.register(cmd.Flags(), true, true)
	cmd.SetArgs([]string{"--database-url", "postgres://x/y", "--templates", "/t", "--namespaces", "a, b", "--concurrency", "7",
		"--web-addr", "127.0.0.1:9", "--readiness-interval", "250ms", "--result-poll-interval", "2s"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	cfg, err := rf.load(env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database.URL != "postgres://x/y" || cfg.TemplatePath != "/t" || strings.Join(cfg.Worker.Namespaces, ",") != "a,b" ||
		cfg.Worker.Concurrency != 7 || cfg.WorkerWeb.BindAddress != "127.0.0.1:9" || cfg.OrchestrationWeb.BindAddress != "127.0.0.1:9" ||
		cfg.Orchestration.ReadinessInterval.String() != "250ms" || cfg.Orchestration.PollInterval.String() != "2s" {
		t.Fatalf("config %+v", cfg)
	}
}

// TestProductionBinariesLinkNoDemo checks that the worker and orchestrator binaries do not link
// the demo and its Docker client (internal/pgcontainer); only cmd/tasker registers `demo`.
func TestProductionBinariesLinkNoDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, bin := range []string{"github.com/tasker-go/tasker/cmd/tasker-worker", "github.com/tasker-go/tasker/cmd/tasker-orchestrator"} {
		out, err := exec.Command("go", "list", "-deps", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", bin, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasSuffix(dep, "/internal/pgcontainer") || strings.HasSuffix(dep, "/internal/cli/demo") {
				t.Errorf("%s links %s", bin, dep)
			}
		}
	}
}
