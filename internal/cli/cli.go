// Package cli implements the tasker command line (cmd/tasker) and the single-purpose binaries
// (cmd/tasker-worker, cmd/tasker-orchestrator), which share its subcommands. The command tree is
// built with cobra: flags may follow positional arguments, every command has --help, and
// command-line mistakes exit with ExitUsage naming the problem.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/domainevents"
	"github.com/tasker-go/tasker/handlers"
)

// Exit codes, documented in the README.
const (
	ExitOK         = 0 // success
	ExitFailure    = 1 // a runtime error (database unreachable, migration failed, ...)
	ExitUsage      = 2 // bad command line
	ExitConfig     = 3 // invalid configuration
	ExitTaskFailed = 4 // task submit --wait: the task ended in error or blocked_by_failures
	ExitNotFound   = 5 // the task, template or queue asked for does not exist
	ExitDuplicate  = 6 // task submit: a task with the same identity (context or idempotency key) exists
)

// Env is what a command may use from its process.
type Env struct {
	Stdin          io.Reader // read by task submit --file - (default os.Stdin)
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Registry holds the handlers a worker started by this binary can run.
	Registry *handlers.Registry
	// Publishers and Subscribers are the domain event publishers and in-process subscribers of
	// workers started by this binary (defaults: the default publisher, no subscribers).
	Publishers  *domainevents.PublisherRegistry
	Subscribers *domainevents.SubscriberRegistry
	// Version is printed by `version` and --version and exposed in metrics; "dev" (or empty)
	// is replaced by what the Go toolchain recorded in the binary (see ResolveVersion).
	Version string
}

// Command builds an extra subcommand for Main from the (defaulted) environment; cmd/tasker adds
// `demo` this way, so that the single-purpose binaries do not link it.
type Command func(env Env) *cobra.Command

// usageError marks errors that are the caller's command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// errNoCommand is a command line without a command: the help was printed, the exit is ExitUsage.
var errNoCommand = &usageError{}

// ConfigError marks invalid configuration (exit code ExitConfig).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// notFoundError marks a missing task/template/queue.
type notFoundError struct{ err error }

func (e *notFoundError) Error() string { return e.err.Error() }
func (e *notFoundError) Unwrap() error { return e.err }

// duplicateError is task submit's refusal of a task whose identity already exists.
type duplicateError struct {
	existing uuid.UUID // uuid.Nil when the existing task could not be read
	err      error
}

func (e *duplicateError) Error() string {
	if e.existing == uuid.Nil {
		return "duplicate task: " + e.err.Error()
	}
	return fmt.Sprintf("duplicate task: task %s already has this identity (same template and context, or the same "+
		"idempotency key); submit with a different --idempotency-key to create another", e.existing)
}

func (e *duplicateError) Unwrap() error { return e.err }

// ErrTaskFailed is returned when a task the command waited for did not complete (exit code
// ExitTaskFailed).
var ErrTaskFailed = errors.New("task did not complete successfully")

// Main runs the command line args (without the program name) and returns the exit code. extra
// adds subcommands to the tree.
func Main(ctx context.Context, prog string, args []string, env Env, extra ...Command) int {
	env = env.withDefaults()
	root := newRoot(prog, env, extra)
	return execute(ctx, root, args, env)
}

// RunCommand runs one subcommand as the whole program (for the single-purpose binaries): prog is
// its name in help and errors, and it also answers --version.
func RunCommand(ctx context.Context, prog, name string, args []string, env Env) int {
	env = env.withDefaults()
	for _, c := range subcommands(env) {
		if c.Name() == name {
			c.Use = prog
			c.Version = env.Version
			c.SetVersionTemplate("{{.Version}}\n")
			return execute(ctx, finish(c, env), args, env)
		}
	}
	fmt.Fprintf(env.Stderr, "%s: unknown command %q\n", prog, name)
	return ExitUsage
}

// subcommands lists the built-in commands.
func subcommands(env Env) []*cobra.Command {
	return []*cobra.Command{
		newMigrateCmd(env),
		newTemplatesCmd(env),
		newTaskCmd(env),
		newStepCmd(env),
		newDLQCmd(env),
		newQueueCmd(env),
		newWorkerCmd(env),
		newOrchestratorCmd(env),
		newDevCmd(env),
		{
			Use:   "version",
			Short: "Print the version",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), env.Version)
				return err
			},
		},
	}
}

func newRoot(prog string, env Env, extra []Command) *cobra.Command {
	root := &cobra.Command{
		Use:   prog,
		Short: "tasker-go: migrations, templates, tasks, queues, and the worker and orchestrator processes",
		Long: "tasker-go: migrations, templates, tasks, queues, and the worker and orchestrator processes.\n\n" +
			"Configuration comes from flags, environment variables (DATABASE_URL, TASKER_*) and an optional\n" +
			"TOML file (--config or TASKER_CONFIG_PATH).",
		Version: env.Version,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				_ = cmd.Help()
				return errNoCommand
			}
			return unknownCommand(cmd, args[0])
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(subcommands(env)...)
	root.AddCommand(newConfigCmd(env))
	for _, mk := range extra {
		root.AddCommand(mk(env))
	}
	root.SetOut(env.Stdout) // before the completion command, which keeps the writer it finds
	root.InitDefaultCompletionCmd()
	return finish(root, env)
}

// finish applies what every command of the tree shares: output streams, silent errors (execute
// prints them), flag errors as usage errors, and groups that refuse unknown subcommands.
func finish(root *cobra.Command, env Env) *cobra.Command {
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		if check := c.Args; check != nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				err := check(cmd, args)
				var ue *usageError
				if err != nil && !errors.As(err, &ue) {
					err = &usageError{err.Error()}
				}
				return err
			}
		}
		if c.HasSubCommands() && c.HasParent() && !c.Runnable() {
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return usagef("want a subcommand: %s", strings.Join(subcommandNames(cmd), " | "))
				}
				return unknownCommand(cmd, args[0])
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return root
}

func subcommandNames(c *cobra.Command) []string {
	var out []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			out = append(out, sub.Name())
		}
	}
	return out
}

func unknownCommand(c *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if s := c.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return &usageError{msg + "; commands: " + strings.Join(subcommandNames(c), ", ")}
}

// noArgs refuses positional arguments, naming them.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument(s) %q", args)
	}
	return nil
}

// optionalArg accepts at most one positional argument, called what.
func optionalArg(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 1 {
			return usagef("want at most one %s, got %d arguments %q", what, len(args), args)
		}
		return nil
	}
}

// oneArg wants exactly one positional argument, called what.
func oneArg(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("want one %s, got %d arguments %q", what, len(args), args)
		}
		return nil
	}
}

// execute runs root on args and maps the outcome to an exit code, printing the error.
func execute(ctx context.Context, root *cobra.Command, args []string, env Env) int {
	root.SetArgs(singleDashLongFlags(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if err == errNoCommand {
		return ExitUsage
	}
	path := root.CommandPath()
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", path, err)
	code := exitCode(err)
	if code == ExitUsage {
		fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", path)
	}
	return code
}

func exitCode(err error) int {
	var ue *usageError
	var ce *ConfigError
	var nf *notFoundError
	var de *duplicateError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &ce):
		return ExitConfig
	case errors.As(err, &nf):
		return ExitNotFound
	case errors.As(err, &de):
		return ExitDuplicate
	case errors.Is(err, ErrTaskFailed):
		return ExitTaskFailed
	}
	return ExitFailure
}

func (env Env) withDefaults() Env {
	if env.Stdin == nil {
		env.Stdin = os.Stdin
	}
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Registry == nil {
		env.Registry = handlers.NewRegistry()
	}
	env.Version = ResolveVersion(env.Version)
	return env
}

// databaseURL is --database-url, else DATABASE_URL.
func databaseURL(env Env, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := env.Getenv("DATABASE_URL"); v != "" {
		return v, nil
	}
	return "", &ConfigError{errors.New("no database: set DATABASE_URL or --database-url")}
}

func connect(ctx context.Context, env Env, flagValue string) (*pgxpool.Pool, error) {
	url, err := databaseURL(env, flagValue)
	if err != nil {
		return nil, err
	}
	return db.Connect(ctx, url, db.WithAppName("tasker-cli"))
}

// Logger is the commands' logger at level (debug, info, warn or error): text on env.Stderr, or
// JSON when TASKER_LOG_FORMAT=json.
func Logger(env Env, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	if env.Getenv("TASKER_LOG_FORMAT") == "json" {
		return slog.New(slog.NewJSONHandler(env.Stderr, &slog.HandlerOptions{Level: l}))
	}
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: l}))
}
