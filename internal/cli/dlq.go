package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/client"
)

// The dlq commands read and update the DLQ investigation log (GET/PATCH /v1/dlq...): the
// staleness detection opens an entry when it moves a stale task to error; operators fix the
// task's steps (task retry, step resolve) and record the outcome here.

var dlqStatusNames = []string{"pending", "manually_resolved", "permanently_failed", "cancelled"}

func newDLQCmd(env Env) *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List | show | resolve | stats: the dead letter queue's investigation entries",
	}
	f.registerPersistent(cmd.PersistentFlags())
	f.registerDB(cmd.PersistentFlags())
	cmd.AddCommand(newDLQListCmd(env, f), newDLQShowCmd(env, f), newDLQResolveCmd(env, f), newDLQStatsCmd(env, f))
	return cmd
}

func newDLQListCmd(env Env, f *apiFlags) *cobra.Command {
	var out output
	var status string
	var limit, offset int
	cmd := &cobra.Command{
		Use:   "list [--status STATUS] [--limit N] [--offset N]",
		Short: "List DLQ entries, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || offset < 0 {
				return usagef("--limit must be at least 1 and --offset at least 0")
			}
			return withAPI(cmd.Context(), env, f, func(c *client.Client) error {
				entries, raw, err := c.DLQ(cmd.Context(), client.DLQQuery{ResolutionStatus: status, Limit: limit, Offset: offset})
				if err != nil {
					return err
				}
				if out.isJSON() {
					return printJSON(env, raw)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ENTRY\tTASK\tREASON\tSTATUS\tORIGINAL STATE\tDLQ AT\tRESOLVED BY")
				for _, e := range entries {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.DLQEntryUUID, e.TaskUUID, e.DLQReason, e.ResolutionStatus,
						e.OriginalState, apiTime(e.DLQTimestamp), orDash(e.ResolvedBy))
				}
				return tw.Flush()
			})
		},
	}
	EnumVar(cmd.Flags(), &status, "status", "", "only entries with this resolution status", dlqStatusNames...)
	cmd.Flags().IntVar(&limit, "limit", 50, "how many entries")
	cmd.Flags().IntVar(&offset, "offset", 0, "skip this many entries")
	out.register(cmd.Flags(), false)
	return cmd
}

func newDLQShowCmd(env Env, f *apiFlags) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "show TASK_UUID",
		Short: "Show a task's most recent DLQ entry with its task snapshot",
		Args:  oneArg("task uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseTaskUUID(args[0])
			if err != nil {
				return err
			}
			return withAPI(cmd.Context(), env, f, func(c *client.Client) error {
				e, raw, err := c.DLQEntry(cmd.Context(), id.String())
				if err != nil {
					return err
				}
				if out.isJSON() {
					return printJSON(env, raw)
				}
				return printDLQEntry(env, e)
			})
		},
	}
	out.register(cmd.Flags(), false)
	return cmd
}

func printDLQEntry(env Env, e *client.DLQEntry) error {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"entry", e.DLQEntryUUID}, {"task", e.TaskUUID}, {"reason", e.DLQReason}, {"status", e.ResolutionStatus},
		{"original state", e.OriginalState}, {"dlq at", apiTime(e.DLQTimestamp)},
		{"resolved by", orDash(e.ResolvedBy)}, {"notes", orDash(e.ResolutionNotes)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "task snapshot:")
	if len(e.TaskSnapshot) == 0 || string(e.TaskSnapshot) == "null" {
		fmt.Fprintln(env.Stdout, "  (none)")
		return nil
	}
	var b strings.Builder
	var pretty json.RawMessage
	if json.Unmarshal(e.TaskSnapshot, &pretty) == nil {
		out, _ := json.MarshalIndent(pretty, "  ", "  ")
		b.Write(out)
	}
	fmt.Fprintln(env.Stdout, "  "+b.String())
	return nil
}

func newDLQResolveCmd(env Env, f *apiFlags) *cobra.Command {
	var out output
	var status, notes, by, metadata string
	cmd := &cobra.Command{
		Use:   "resolve ENTRY_UUID --status STATUS [--notes TEXT] [--by NAME] [--metadata JSON]",
		Short: "Record the outcome of an investigation on a DLQ entry",
		Long: "Record the outcome of an investigation (PATCH /v1/dlq/entry/{uuid}): --status sets the\n" +
			"resolution status and stamps its time; a resolved entry's status cannot change again\n" +
			"(exit 6). This records the outcome only: fix the task itself with `tasker task retry` or\n" +
			"`tasker step resolve`.",
		Args: oneArg("DLQ entry uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := uuid.Parse(args[0])
			if err != nil {
				return usagef("want a DLQ entry uuid, got %q", args[0])
			}
			if status == "" {
				return usagef("--status is required (%s)", strings.Join(dlqStatusNames, "|"))
			}
			u := client.DLQUpdate{ResolutionStatus: &status}
			if notes != "" {
				u.ResolutionNotes = &notes
			}
			if by != "" {
				u.ResolvedBy = &by
			}
			if metadata != "" {
				if !json.Valid([]byte(metadata)) {
					return usagef("--metadata is not valid JSON")
				}
				u.Metadata = json.RawMessage(metadata)
			}
			return withAPI(cmd.Context(), env, f, func(c *client.Client) error {
				return runDLQResolve(cmd.Context(), env, c, id, u, out)
			})
		},
	}
	fs := cmd.Flags()
	EnumVar(fs, &status, "status", "", "the resolution status", dlqStatusNames...)
	fs.StringVar(&notes, "notes", "", "resolution notes")
	fs.StringVar(&by, "by", "", "who resolved it")
	fs.StringVar(&metadata, "metadata", "", "metadata (JSON) stored with the entry")
	out.register(fs, false)
	return cmd
}

func runDLQResolve(ctx context.Context, env Env, c *client.Client, id uuid.UUID, u client.DLQUpdate, out output) error {
	_, raw, err := c.UpdateDLQEntry(ctx, id.String(), u)
	if err != nil {
		return err
	}
	if out.isJSON() {
		return printJSON(env, raw)
	}
	fmt.Fprintf(env.Stdout, "DLQ entry %s: %s\n", id, *u.ResolutionStatus)
	return nil
}

func newDLQStatsCmd(env Env, f *apiFlags) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "DLQ entries by reason and resolution status",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAPI(cmd.Context(), env, f, func(c *client.Client) error {
				stats, raw, err := c.DLQStats(cmd.Context())
				if err != nil {
					return err
				}
				if out.isJSON() {
					return printJSON(env, raw)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "REASON\tTOTAL\tPENDING\tMANUALLY RESOLVED\tPERMANENTLY FAILED\tCANCELLED\tOLDEST\tNEWEST")
				for _, s := range stats {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.DLQReason, s.TotalEntries, s.Pending, s.ManuallyResolved,
						s.PermanentFailures, s.Cancelled, apiTimeOrDash(s.OldestEntry), apiTimeOrDash(s.NewestEntry))
				}
				return tw.Flush()
			})
		},
	}
	out.register(cmd.Flags(), false)
	return cmd
}

func apiTimeOrDash(s *string) string {
	if s == nil {
		return "-"
	}
	return apiTime(*s)
}
