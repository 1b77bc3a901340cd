package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/tasker-go/tasker/migrations"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/worker"
)

func runMigrate(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "migrate", "migrate [--check | --status] [--database-url URL]")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	check := fs.Bool("check", false, "only verify the schema tasker-go needs (works on a tasker-core database); exit 1 if something is missing")
	status := fs.Bool("status", false, "list applied migrations")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pool, err := connect(ctx, env, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch {
	case *check:
		if err := migrations.Check(ctx, pool); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "schema ok: every table, column, function and index tasker-go needs is present")
		return nil
	case *status:
		applied, err := migrations.Status(ctx, pool)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED AT")
		for _, a := range applied {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Version, a.Name, a.AppliedAt.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
	if err := migrations.Up(ctx, pool, logger(env, *logLevel)); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "migrations applied")
	return nil
}

func runTemplates(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		return usagef("templates: want register <dir> | list | validate <dir>")
	}
	sub, args := args[0], args[1:]
	fs := newFlags(env, "templates "+sub, "templates "+sub+" [flags] [dir]")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir := fs.Arg(0)
	if dir == "" {
		dir = env.Getenv("TASKER_TEMPLATE_PATH")
	}
	switch sub {
	case "validate", "register":
		if dir == "" {
			return usagef("templates %s: give a directory (or set TASKER_TEMPLATE_PATH)", sub)
		}
		tmpls, err := template.LoadDir(dir)
		if err != nil {
			return &configError{err}
		}
		if sub == "validate" {
			for _, t := range tmpls {
				fmt.Fprintf(env.Stdout, "ok  %s (%d steps)\n", t.Key(), len(t.Steps))
			}
			return nil
		}
		pool, err := connect(ctx, env, *dbURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := worker.RegisterTemplates(ctx, pool, tmpls); err != nil {
			return err
		}
		for _, t := range tmpls {
			fmt.Fprintf(env.Stdout, "registered %s\n", t.Key())
		}
		return nil
	case "list":
		pool, err := connect(ctx, env, *dbURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		rows, err := pool.Query(ctx, `SELECT tn.name, nt.name, nt.version, jsonb_array_length(COALESCE(nt.configuration->'steps', '[]'::jsonb)), nt.updated_at
			FROM tasker.named_tasks nt JOIN tasker.task_namespaces tn USING (task_namespace_uuid) ORDER BY 1, 2, 3`)
		if err != nil {
			return err
		}
		defer rows.Close()
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tVERSION\tSTEPS\tUPDATED")
		for rows.Next() {
			var ns, name, version string
			var steps int
			var updated time.Time
			if err := rows.Scan(&ns, &name, &version, &steps, &updated); err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", ns, name, version, steps, updated.Format(time.RFC3339))
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return tw.Flush()
	}
	return usagef("templates: unknown subcommand %q (register | list | validate)", sub)
}

func runQueue(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] != "stats" {
		return usagef("queue: want stats")
	}
	fs := newFlags(env, "queue stats", "queue stats [--database-url URL]")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	pool, err := connect(ctx, env, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	ms, err := queue.NewClient(pool).MetricsAll(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tLENGTH\tVISIBLE\tOLDEST AGE\tTOTAL SENT")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", m.Queue, m.Length, m.VisibleLength, m.OldestAge.Round(time.Second), m.TotalMessages)
	}
	return tw.Flush()
}
