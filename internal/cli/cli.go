// Package cli implements the tasker command line (cmd/tasker) and the single-purpose binaries
// (cmd/tasker-worker, cmd/tasker-orchestrator), which share its subcommands.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

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
	// Version is printed by `version` and exposed in metrics.
	Version string
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

func commands() []command {
	return []command{
		{"migrate", "apply (or --check, --status) the tasker schema and PGMQ", runMigrate},
		{"templates", "register | list | validate task templates", runTemplates},
		{"task", "submit | status | list | cancel tasks", runTask},
		{"queue", "stats: depth and age of every PGMQ queue", runQueue},
		{"worker", "run a worker (handlers of this binary)", runWorker},
		{"orchestrator", "run the orchestration core", runOrchestrator},
		{"dev", "run orchestrator + worker in one process", runDev},
		{"demo", "start Postgres if needed, run example workflows end to end, print results", runDemo},
		{"version", "print the version", func(_ context.Context, env Env, _ []string) error {
			fmt.Fprintln(env.Stdout, env.Version)
			return nil
		}},
	}
}

// usageError marks errors that are the caller's command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// configError marks invalid configuration.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

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

// errTaskFailed is returned by task submit --wait for a task that did not complete.
var errTaskFailed = errors.New("task did not complete successfully")

// Main runs the command line args (without the program name) and returns the exit code.
func Main(ctx context.Context, prog string, args []string, env Env) int {
	env = env.withDefaults()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.Stdout, prog)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return exitCode(env, prog+" "+c.name, c.run(ctx, env, args[1:]))
		}
	}
	fmt.Fprintf(env.Stderr, "%s: unknown command %q\n\n", prog, args[0])
	printUsage(env.Stderr, prog)
	return ExitUsage
}

// RunCommand runs one subcommand directly (for the single-purpose binaries).
func RunCommand(ctx context.Context, prog, name string, args []string, env Env) int {
	env = env.withDefaults()
	for _, c := range commands() {
		if c.name == name {
			return exitCode(env, prog, c.run(ctx, env, args))
		}
	}
	return ExitUsage
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
	return env
}

func exitCode(env Env, prog string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
	var ue *usageError
	var ce *configError
	var nf *notFoundError
	var de *duplicateError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &ce):
		return ExitConfig
	case errors.As(err, &nf):
		return ExitNotFound
	case errors.As(err, &de):
		return ExitDuplicate
	case errors.Is(err, errTaskFailed):
		return ExitTaskFailed
	}
	return ExitFailure
}

func printUsage(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", prog)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags. Configuration comes from flags, environment\n"+
		"variables (DATABASE_URL, TASKER_*) and an optional TOML file (--config or TASKER_CONFIG_PATH).\n", prog)
}

// newFlags returns a FlagSet that prints its usage to env.Stderr and returns errors.
func newFlags(env Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: tasker %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}

// databaseURL is --database-url, else DATABASE_URL.
func databaseURL(env Env, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := env.Getenv("DATABASE_URL"); v != "" {
		return v, nil
	}
	return "", &configError{errors.New("no database: set DATABASE_URL or --database-url")}
}

func connect(ctx context.Context, env Env, flagValue string) (*pgxpool.Pool, error) {
	url, err := databaseURL(env, flagValue)
	if err != nil {
		return nil, err
	}
	return db.Connect(ctx, url, db.WithAppName("tasker-cli"))
}

func logger(env Env, level string) *slog.Logger {
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
