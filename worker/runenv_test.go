package worker

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/template"
)

// templateDir copies example templates into a fresh directory.
func templateDir(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("..", "examples", "templates", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestWithTemplatesFillsNamespaces(t *testing.T) {
	reg := handlers.NewRegistry()
	dir := templateDir(t, "linear_workflow.yaml", "diamond_workflow.yaml")

	w, err := New(DefaultConfig(), nil, reg, WithTemplates(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Config().Namespaces; !slices.Equal(got, []string{"rust_e2e_diamond", "rust_e2e_linear"}) {
		t.Errorf("namespaces %v", got)
	}
	if n := len(w.startTemplates.loaded); n != 2 {
		t.Errorf("%d templates loaded, want 2", n)
	}

	cfg := DefaultConfig()
	cfg.Namespaces = []string{"rust_e2e_linear"}
	if w, err = New(cfg, nil, reg, WithTemplates(dir)); err != nil || !slices.Equal(w.Config().Namespaces, cfg.Namespaces) {
		t.Errorf("configured namespaces must be kept: %v %v", w.Config().Namespaces, err)
	}

	// Without templates there is nothing to consume; an empty directory option is no option.
	var ce *ConfigError
	if _, err := New(DefaultConfig(), nil, reg, WithTemplates("")); !errors.As(err, &ce) || ce.Key != "TASKER_NAMESPACES" {
		t.Errorf("no namespaces: %v", err)
	}
}

func TestWithTemplatesRefusesBadTemplates(t *testing.T) {
	reg := handlers.NewRegistry()
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "broken.yaml"), []byte("name: x\nnamespace_name: y\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"invalid": bad, "missing": filepath.Join(bad, "nope"), "empty": t.TempDir()} {
		_, err := New(DefaultConfig(), nil, reg, WithTemplates(dir))
		var te *TemplateError
		if !errors.As(err, &te) || te.Dir != dir {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err := New(DefaultConfig(), nil, reg, WithTemplates(bad))
	var le *template.LoadError
	if !errors.As(err, &le) {
		t.Errorf("invalid template: want a *template.LoadError naming it, got %v", err)
	}
}

func TestMainExitCodes(t *testing.T) {
	reg := handlers.NewRegistry()
	linear := templateDir(t, "linear_workflow.yaml")
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"no database url", map[string]string{}, ExitConfig},
		{"bad setting", map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "TASKER_CONCURRENCY": "lots"}, ExitConfig},
		{"bad pool size", map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "TASKER_DB_MAX_CONNS": "0"}, ExitConfig},
		{"bad url", map[string]string{"DATABASE_URL": "postgres://x:y@[::1"}, ExitConfig},
		{"unreachable database", map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/x?connect_timeout=2", "TASKER_TEMPLATE_PATH": linear}, ExitFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"DATABASE_URL", "TASKER_CONCURRENCY", "TASKER_DB_MAX_CONNS", "TASKER_TEMPLATE_PATH", "TASKER_NAMESPACES"} {
				t.Setenv(k, tc.env[k])
			}
			if got := Main(reg); got != tc.want {
				t.Errorf("exit code %d, want %d", got, tc.want)
			}
		})
	}
}
