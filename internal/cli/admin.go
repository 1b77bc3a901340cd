package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/migrations"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/web"
	"github.com/tasker-go/tasker/worker"
)

func newMigrateCmd(env Env) *cobra.Command {
	var dbURL, logLevel string
	var check, status bool
	cmd := &cobra.Command{
		Use:   "migrate [--check | --status]",
		Short: "Apply (or --check, --status) the tasker schema and PGMQ",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMigrate(cmd.Context(), env, dbURL, logLevel, check, status)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	fs.BoolVar(&check, "check", false, "only verify the schema tasker-go needs (works on a tasker-core database); exit 1 if something is missing")
	fs.BoolVar(&status, "status", false, "list applied migrations")
	LogLevelVar(fs, &logLevel, "info")
	return cmd
}

func runMigrate(ctx context.Context, env Env, dbURL, logLevel string, check, status bool) error {
	pool, err := connect(ctx, env, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch {
	case check:
		if err := migrations.Check(ctx, pool); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "schema ok: every table, column, function and index tasker-go needs is present")
		return nil
	case status:
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
	if err := migrations.Up(ctx, pool, Logger(env, logLevel)); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "migrations applied")
	return nil
}

func newTemplatesCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "templates",
		Short: "Register | list | validate task templates",
	}
	for _, sub := range []struct{ name, use, short string }{
		{"register", "register [DIR]", "Validate and register the templates of DIR (default $TASKER_TEMPLATE_PATH)"},
		{"list", "list", "List the registered templates"},
		{"validate", "validate [DIR]", "Validate the templates of DIR (default $TASKER_TEMPLATE_PATH) without a database"},
	} {
		var dbURL string
		var out output
		c := &cobra.Command{
			Use:   sub.use,
			Short: sub.short,
			Args:  optionalArg("template directory"),
			RunE: func(cmd *cobra.Command, args []string) error {
				if sub.name == "list" && out.isJSON() {
					return runTemplatesListJSON(cmd.Context(), env, dbURL)
				}
				return runTemplates(cmd.Context(), env, sub.name, dbURL, args)
			},
		}
		if sub.name == "list" {
			c.Args = noArgs
			out.register(c.Flags(), false)
		}
		c.Flags().StringVar(&dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
		if sub.name == "validate" {
			_ = c.Flags().MarkHidden("database-url") // accepted for compatibility; validate needs no database
		}
		cmd.AddCommand(c)
	}
	return cmd
}

func runTemplates(ctx context.Context, env Env, sub, dbURL string, args []string) error {
	dir := ""
	if len(args) > 0 {
		dir = args[0]
	}
	if dir == "" {
		dir = env.Getenv("TASKER_TEMPLATE_PATH")
	}
	switch sub {
	case "validate", "register":
		if dir == "" {
			return usagef("give a directory (or set TASKER_TEMPLATE_PATH)")
		}
		tmpls, err := template.LoadDir(dir)
		if err != nil {
			return &ConfigError{err}
		}
		if sub == "validate" {
			for _, t := range tmpls {
				fmt.Fprintf(env.Stdout, "ok  %s (%d steps)\n", t.Key(), len(t.Steps))
			}
			return nil
		}
		pool, err := connect(ctx, env, dbURL)
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
		pool, err := connect(ctx, env, dbURL)
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
	return usagef("unknown subcommand %q", sub)
}

func newQueueCmd(env Env) *cobra.Command {
	var dbURL string
	var out output
	stats := &cobra.Command{
		Use:   "stats",
		Short: "Depth and age of every PGMQ queue",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runQueueStats(cmd.Context(), env, dbURL, out)
		},
	}
	stats.Flags().StringVar(&dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	out.register(stats.Flags(), false)
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Stats: depth and age of every PGMQ queue",
	}
	cmd.AddCommand(stats)
	return cmd
}

func runQueueStats(ctx context.Context, env Env, dbURL string, out output) error {
	pool, err := connect(ctx, env, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	ms, err := queue.NewClient(pool).MetricsAll(ctx)
	if err != nil {
		return err
	}
	if out.isJSON() {
		return printQueueStatsJSON(env, ms)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tLENGTH\tVISIBLE\tOLDEST AGE\tTOTAL SENT")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", m.Queue, m.Length, m.VisibleLength, m.OldestAge.Round(time.Second), m.TotalMessages)
	}
	return tw.Flush()
}

// runTemplatesListJSON prints the registered templates as the orchestrator's GET /v1/templates
// answers them.
func runTemplatesListJSON(ctx context.Context, env Env, dbURL string) error {
	pool, err := connect(ctx, env, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	list, err := web.DBTemplates{DB: pool}.ListTemplates(ctx, "")
	if err != nil {
		return err
	}
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return printJSON(env, b)
}

// queueStatsJSON is one queue of queue stats -o json, in PGMQ's metrics field names.
type queueStatsJSON struct {
	QueueName          string    `json:"queue_name"`
	QueueLength        int64     `json:"queue_length"`
	QueueVisibleLength int64     `json:"queue_visible_length"`
	NewestMsgAgeSec    int64     `json:"newest_msg_age_sec"`
	OldestMsgAgeSec    int64     `json:"oldest_msg_age_sec"`
	TotalMessages      int64     `json:"total_messages"`
	ScrapeTime         time.Time `json:"scrape_time"`
}

func printQueueStatsJSON(env Env, ms []queue.Metrics) error {
	out := make([]queueStatsJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, queueStatsJSON{QueueName: m.Queue, QueueLength: m.Length, QueueVisibleLength: m.VisibleLength,
			NewestMsgAgeSec: int64(m.NewestAge / time.Second), OldestMsgAgeSec: int64(m.OldestAge / time.Second),
			TotalMessages: m.TotalMessages, ScrapeTime: m.ScrapedAt})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return printJSON(env, b)
}
