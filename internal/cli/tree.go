package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
)

// stepEdges returns each step's parents (workflow_step_edges) for the task.
func stepEdges(ctx context.Context, pool *pgxpool.Pool, task uuid.UUID) (map[uuid.UUID][]uuid.UUID, error) {
	rows, err := pool.Query(ctx, `SELECT e.from_step_uuid, e.to_step_uuid FROM tasker.workflow_step_edges e
		JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = e.to_step_uuid WHERE ws.task_uuid = $1`, task)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	parents := map[uuid.UUID][]uuid.UUID{}
	for rows.Next() {
		var from, to uuid.UUID
		if err := rows.Scan(&from, &to); err != nil {
			return nil, err
		}
		parents[to] = append(parents[to], from)
	}
	return parents, rows.Err()
}

// stepTree renders the steps as a tree: roots first, each child under its first parent (a step
// with several parents lists the others after "also after").
func stepTree(st *orchestration.TaskStatus, parents map[uuid.UUID][]uuid.UUID) []string {
	byID := map[uuid.UUID]orchestration.StepStatus{}
	children := map[uuid.UUID][]uuid.UUID{}
	var roots []uuid.UUID
	for _, s := range st.Steps {
		byID[s.StepUUID] = s
	}
	for _, s := range st.Steps {
		ps := parents[s.StepUUID]
		if len(ps) == 0 {
			roots = append(roots, s.StepUUID)
			continue
		}
		sort.Slice(ps, func(i, j int) bool { return byID[ps[i]].Name < byID[ps[j]].Name })
		children[ps[0]] = append(children[ps[0]], s.StepUUID)
	}
	byName := func(ids []uuid.UUID) {
		sort.Slice(ids, func(i, j int) bool { return byID[ids[i]].Name < byID[ids[j]].Name })
	}
	byName(roots)
	var out []string
	var walk func(id uuid.UUID, prefix string, last bool, depth int)
	walk = func(id uuid.UUID, prefix string, last bool, depth int) {
		s := byID[id]
		branch, next := "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
		if depth == 0 {
			branch, next = "", ""
		}
		line := fmt.Sprintf("  %s%s%s  %s  attempts %d/%d%s", prefix, branch, s.Name, s.State, s.Attempts, s.MaxAttempts, stepTiming(s))
		if ps := parents[id]; len(ps) > 1 {
			var also []string
			for _, p := range ps[1:] {
				also = append(also, byID[p].Name)
			}
			line += "  (also after " + strings.Join(also, ", ") + ")"
		}
		out = append(out, line)
		kids := children[id]
		byName(kids)
		for i, k := range kids {
			walk(k, prefix+next, i == len(kids)-1, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, "", true, 0)
	}
	return out
}

// stepTiming is the tail of a step's line: how long it took, why it failed for good, when it
// retries, or how long it has been running. Only a step in waiting_for_retry shows a retry time.
func stepTiming(s orchestration.StepStatus) string {
	switch {
	case s.State == state.StepError:
		why := "not retryable"
		if s.ErrorRetryable != nil && *s.ErrorRetryable && s.Attempts >= s.MaxAttempts {
			why = "attempts exhausted"
		}
		if s.ErrorMessage != "" {
			return fmt.Sprintf("  failed, %s: %s", why, oneLine(s.ErrorMessage, 120))
		}
		return "  failed, " + why
	case s.ProcessedAt != nil:
		return fmt.Sprintf("  done in %s", s.ProcessedAt.Sub(s.CreatedAt).Round(time.Millisecond))
	case s.State == state.StepWaitingForRetry && s.NextRetryAt != nil && s.NextRetryAt.After(time.Now()):
		return fmt.Sprintf("  retry at %s", s.NextRetryAt.Format("15:04:05.000Z07:00"))
	case s.LastAttemptedAt != nil:
		return fmt.Sprintf("  started %s ago", time.Since(*s.LastAttemptedAt).Round(time.Millisecond))
	}
	return ""
}

// oneLine returns s on one line, cut to at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
