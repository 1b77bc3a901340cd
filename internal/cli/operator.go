package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/client"
	"github.com/tasker-go/tasker/state"
)

// This file holds the commands that go through the REST API (remotely, or in-process over the
// database; see withAPI) and what they print: task list, cancel and retry, step resolve and dlq.

// apiTime shows an API timestamp as RFC 3339 in whole seconds (as given when it does not parse).
func apiTime(s string) string {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Format(time.RFC3339)
		}
	}
	return s
}

func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// listTasks pages through GET /v1/tasks until it has limit tasks in stateFilter ("" for any).
// The API's status=pending means "not complete", so the state is also checked here.
func listTasks(ctx context.Context, c *client.Client, limit int, stateFilter string) ([]client.Task, []json.RawMessage, error) {
	var tasks []client.Task
	var raws []json.RawMessage
	for page := 1; len(tasks) < limit; page++ {
		l, raw, err := c.ListTasks(ctx, client.TaskQuery{Page: page, PerPage: 100, Status: stateFilter})
		if err != nil {
			return nil, nil, err
		}
		var body struct {
			Tasks []json.RawMessage `json:"tasks"`
		}
		if err := json.Unmarshal(raw, &body); err != nil || len(body.Tasks) != len(l.Tasks) {
			return nil, nil, fmt.Errorf("task list: unexpected API answer: %v", err)
		}
		for i, t := range l.Tasks {
			if (stateFilter == "" || t.Status == stateFilter) && len(tasks) < limit {
				tasks, raws = append(tasks, t), append(raws, body.Tasks[i])
			}
		}
		if !l.Pagination.HasNext {
			break
		}
	}
	return tasks, raws, nil
}

func runTaskList(ctx context.Context, env Env, f *apiFlags, limit int, stateFilter string, out output) error {
	return withAPI(ctx, env, f, func(c *client.Client) error {
		tasks, raws, err := listTasks(ctx, c, limit, stateFilter)
		if err != nil {
			return err
		}
		if out.isJSON() {
			b, err := json.Marshal(emptyRaw(raws))
			if err != nil {
				return err
			}
			return printJSON(env, b)
		}
		return printTaskTable(env.Stdout, tasks)
	})
}

func emptyRaw(r []json.RawMessage) []json.RawMessage {
	if r == nil {
		return []json.RawMessage{}
	}
	return r
}

// printTaskTable is task list's table.
func printTaskTable(w io.Writer, tasks []client.Task) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tNAMESPACE/NAME\tVERSION\tSTATE\tSTEPS DONE\tCREATED")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%d/%d\t%s\n", t.TaskUUID, t.Namespace, t.Name, t.Version, t.Status,
			t.CompletedSteps, t.TotalSteps, apiTime(t.CreatedAt))
	}
	return tw.Flush()
}

func runTaskCancel(ctx context.Context, env Env, f *apiFlags, id uuid.UUID, out output) error {
	return withAPI(ctx, env, f, func(c *client.Client) error {
		before, _, err := c.Task(ctx, id.String())
		if err != nil {
			return taskNotFound(err, id)
		}
		after, raw, err := c.CancelTask(ctx, id.String())
		if err != nil {
			return err
		}
		if out.isJSON() {
			return printJSON(env, raw)
		}
		fmt.Fprintf(env.Stdout, "task %s cancelled (%d steps cancelled)\n", id, cancelledSteps(before, after))
		return nil
	})
}

// cancelledSteps counts the steps that were not cancelled before and are after.
func cancelledSteps(before, after *client.Task) int {
	was := map[string]string{}
	for _, s := range before.Steps {
		was[s.WorkflowStepUUID] = s.CurrentState
	}
	n := 0
	for _, s := range after.Steps {
		if s.CurrentState == string(state.StepCancelled) && was[s.WorkflowStepUUID] != string(state.StepCancelled) {
			n++
		}
	}
	return n
}

// operator is the --reason and --by of an operator action.
type operator struct{ reason, by string }

func (op *operator) register(cmd *cobra.Command, defReason string) {
	cmd.Flags().StringVar(&op.reason, "reason", defReason, "why (sent with the action; the orchestrator logs it)")
	cmd.Flags().StringVar(&op.by, "by", "", "who acts (sent with the action; default $USER, else tasker-cli)")
}

func (op operator) who(env Env) string {
	if op.by != "" {
		return op.by
	}
	if u := env.Getenv("USER"); u != "" {
		return u
	}
	return "tasker-cli"
}

func newTaskRetryCmd(env Env, f *apiFlags) *cobra.Command {
	var op operator
	var out output
	cmd := &cobra.Command{
		Use:   "retry TASK_UUID [--reason TEXT] [--by NAME]",
		Short: "Reset the task's failed steps (state error) for retry",
		Long: "Reset the task's failed steps for retry: every step of the task in state error gets the manual\n" +
			"action reset_for_retry (PATCH /v1/tasks/{uuid}/workflow_steps/{step_uuid}), which moves it to\n" +
			"pending with its attempts set to 0 (--reason and --by go with the request; the orchestrator\n" +
			"logs them). Steps in other states are left alone. A task that is still running enqueues the\n" +
			"reset steps at once. A task in blocked_by_failures stays blocked (tasker-core's task state\n" +
			"machine has no way back to processing); resolve or complete its steps with `tasker step resolve` to finish it.\n" +
			"Prints one line per step reset; exits 0 with a note when no step is in error.",
		Args: oneArg("task uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseTaskUUID(args[0])
			if err != nil {
				return err
			}
			return withAPI(cmd.Context(), env, f, func(c *client.Client) error {
				return runTaskRetry(cmd.Context(), env, c, id, op, out)
			})
		},
	}
	op.register(cmd, "retry requested with tasker task retry")
	out.register(cmd.Flags(), false)
	cmd.Flags().StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	return cmd
}

func runTaskRetry(ctx context.Context, env Env, c *client.Client, id uuid.UUID, op operator, out output) error {
	t, _, err := c.Task(ctx, id.String())
	if err != nil {
		return taskNotFound(err, id)
	}
	var reset []json.RawMessage
	for _, s := range t.Steps {
		if s.CurrentState != string(state.StepError) {
			continue
		}
		step, raw, err := c.ResolveStep(ctx, id.String(), s.WorkflowStepUUID, client.ManualAction{
			ActionType: "reset_for_retry", Reason: op.reason, ResetBy: op.who(env)})
		if err != nil {
			return fmt.Errorf("step %s (%s): %w", s.Name, s.WorkflowStepUUID, err)
		}
		reset = append(reset, raw)
		if !out.isJSON() {
			fmt.Fprintf(env.Stdout, "step %s (%s) reset for retry: %s, attempts %d/%d\n", step.Name, step.StepUUID,
				step.CurrentState, step.Attempts, step.MaxAttempts)
		}
	}
	if out.isJSON() {
		b, err := json.Marshal(emptyRaw(reset))
		if err != nil {
			return err
		}
		return printJSON(env, b)
	}
	if len(reset) == 0 {
		fmt.Fprintf(env.Stdout, "task %s has no step in error; nothing reset\n", id)
	}
	return nil
}

func newStepCmd(env Env) *cobra.Command {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:   "step",
		Short: "Resolve: operator actions on a workflow step",
	}
	f.registerPersistent(cmd.PersistentFlags())
	f.registerDB(cmd.PersistentFlags())
	cmd.AddCommand(newStepResolveCmd(env, f))
	return cmd
}

var manualActions = []string{"reset_for_retry", "resolve_manually", "complete_manually"}

func newStepResolveCmd(env Env, f *apiFlags) *cobra.Command {
	var op operator
	var out output
	var action, result, metadata string
	cmd := &cobra.Command{
		Use:   "resolve TASK_UUID STEP_UUID --action ACTION --reason TEXT --by NAME [--result JSON]",
		Short: "Apply an operator action to a step",
		Long: "Apply an operator action to a step (PATCH /v1/tasks/{uuid}/workflow_steps/{step_uuid}):\n" +
			"  reset_for_retry    a step in error goes back to pending with attempts 0, to run again\n" +
			"  resolve_manually   the step becomes resolved_manually, without results; dependents may run\n" +
			"  complete_manually  the step becomes complete with --result (JSON) as its results\n" +
			"A task in blocked_by_failures whose steps are then all complete or resolved becomes\n" +
			"resolved_manually; a running task moves on at once. Prints the step afterwards.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("want a task uuid and a step uuid, got %d arguments %q", len(args), args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			task, err := parseTaskUUID(args[0])
			if err != nil {
				return err
			}
			step, err := uuid.Parse(args[1])
			if err != nil {
				return usagef("want a step uuid, got %q", args[1])
			}
			a, err := manualAction(env, action, result, metadata, op)
			if err != nil {
				return err
			}
			return withAPI(cmd.Context(), env, f, func(c *client.Client) error {
				s, raw, err := c.ResolveStep(cmd.Context(), task.String(), step.String(), a)
				if err != nil {
					return err
				}
				if out.isJSON() {
					return printJSON(env, raw)
				}
				fmt.Fprintf(env.Stdout, "step %s (%s) %s: %s, attempts %d/%d\n", s.Name, s.StepUUID, action,
					s.CurrentState, s.Attempts, s.MaxAttempts)
				return nil
			})
		},
	}
	fs := cmd.Flags()
	EnumVar(fs, &action, "action", "", "the operator action", manualActions...)
	fs.StringVar(&result, "result", "", "complete_manually: the step's results (JSON; default null)")
	fs.StringVar(&metadata, "metadata", "", "complete_manually: extra metadata (JSON object)")
	op.register(cmd, "")
	out.register(fs, false)
	return cmd
}

// manualAction checks step resolve's flags and builds the API's StepManualAction.
func manualAction(env Env, action, result, metadata string, op operator) (client.ManualAction, error) {
	a := client.ManualAction{ActionType: action, Reason: op.reason}
	switch {
	case action == "":
		return a, usagef("--action is required (%s)", strings.Join(manualActions, "|"))
	case strings.TrimSpace(op.reason) == "":
		return a, usagef("--reason is required")
	case op.by == "":
		return a, usagef("--by is required")
	case action != "complete_manually" && (result != "" || metadata != ""):
		return a, usagef("--result and --metadata go with --action complete_manually only")
	}
	by := op.who(env)
	switch action {
	case "reset_for_retry":
		a.ResetBy = by
	case "resolve_manually":
		a.ResolvedBy = by
	case "complete_manually":
		a.CompletedBy = by
		a.CompletionData = &client.ManualCompletionData{Result: json.RawMessage("null")}
		if result != "" {
			if !json.Valid([]byte(result)) {
				return a, usagef("--result is not valid JSON")
			}
			a.CompletionData.Result = json.RawMessage(result)
		}
		if metadata != "" {
			if !json.Valid([]byte(metadata)) {
				return a, usagef("--metadata is not valid JSON")
			}
			a.CompletionData.Metadata = json.RawMessage(metadata)
		}
	}
	return a, nil
}
