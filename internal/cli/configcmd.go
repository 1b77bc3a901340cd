package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/config"
)

// newConfigCmd is `config validate`: load the configuration as the worker and orchestrator do
// and print the effective settings and the tasker-core keys that are ignored.
func newConfigCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check configuration files",
	}
	var opts config.Options
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Load the configuration and print the effective settings (secrets redacted) and the ignored tasker-core keys",
		Long: "Load the configuration as `worker` and `orchestrator` do (defaults, --config-dir's base and\n" +
			"environment files, --config, the environment) and print every setting with its source,\n" +
			"secrets redacted, then the keys of tasker-core's schema that tasker-go ignores.\n" +
			"Exits 3 when the configuration is invalid.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Getenv = env.Getenv
			opts.Logger = slog.New(slog.DiscardHandler) // the ignored keys are printed below
			cfg, err := config.Load(opts)
			if err != nil {
				return &ConfigError{err}
			}
			return printConfig(cmd.OutOrStdout(), cfg)
		},
	}
	f := validate.Flags()
	f.StringVar(&opts.Path, "config", "", "TOML configuration file, layered last (default $TASKER_CONFIG_PATH)")
	f.StringVar(&opts.Dir, "config-dir", "", "tasker-core configuration directory: base/*.toml then environments/$TASKER_ENV/*.toml (default $TASKER_CONFIG_DIR)")
	f.StringVar(&opts.Environment, "env", "", "environment of --config-dir (default $TASKER_ENV, else "+config.DefaultEnvironment+")")
	cmd.AddCommand(validate)
	return cmd
}

func printConfig(w io.Writer, cfg config.Config) error {
	var b strings.Builder
	if len(cfg.Files) == 0 {
		b.WriteString("# files: none\n")
	}
	for _, f := range cfg.Files {
		fmt.Fprintf(&b, "# file: %s\n", f)
	}
	settings := cfg.Effective()
	width := 0
	for _, s := range settings {
		width = max(width, len(s.Key)+3+len(s.Value))
	}
	for _, s := range settings {
		line := s.Key + " = " + s.Value
		fmt.Fprintf(&b, "%-*s  # %s\n", width, line, s.Source)
	}
	fmt.Fprintf(&b, "\n# ignored tasker-core keys (%d):\n", len(cfg.Ignored))
	for _, k := range cfg.Ignored {
		fmt.Fprintf(&b, "#   %s\n", k)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
