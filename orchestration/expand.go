package orchestration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/template"
)

// decisionSegment is the part of a template a decision step opens: every step reachable from
// the decision's direct children along dependent edges, stopping at other decision steps (the
// segment's exits, which are not part of it). tasker-core calls it the decision's workflow graph.
type decisionSegment struct {
	steps map[string]bool
	exits []string
}

func dependentsOf(t *template.TaskTemplate) map[string][]string {
	out := map[string][]string{}
	for _, s := range t.Steps {
		for _, d := range s.Dependencies {
			out[d] = append(out[d], s.Name)
		}
	}
	return out
}

func segmentFromDecision(t *template.TaskTemplate, decision string) decisionSegment {
	seg := decisionSegment{steps: map[string]bool{}}
	isDecision := map[string]bool{}
	for _, s := range t.Steps {
		if s.Type == template.StepDecision {
			isDecision[s.Name] = true
		}
	}
	deps := dependentsOf(t)
	exits := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if seg.steps[name] {
			return
		}
		if isDecision[name] && name != decision {
			if !exits[name] {
				exits[name] = true
				seg.exits = append(seg.exits, name)
			}
			return
		}
		seg.steps[name] = true
		for _, d := range deps[name] {
			visit(d)
		}
	}
	for _, child := range deps[decision] {
		visit(child)
	}
	return seg
}

// planDecision returns the template steps a decision outcome creates, in template order, with
// tasker-core's rules (decision_point/service.rs determine_steps_to_create):
//  1. every requested name must lie in the decision's segment;
//  2. the requested steps, plus the segment's exit decisions;
//  3. plus what is reachable from those inside the segment, except deferred_convergence and
//     batch_worker steps;
//  4. plus every deferred_convergence step whose dependencies intersect the set;
//  5. plus steps after those convergence steps whose dependencies are all in the set (or are
//     the decision step).
func planDecision(t *template.TaskTemplate, decision string, requested []string, maxSteps int) ([]string, error) {
	if len(requested) > maxSteps {
		return nil, &ExpansionError{Kind: "decision", Step: decision,
			Message: fmt.Sprintf("outcome names %d steps, more than the maximum of %d", len(requested), maxSteps)}
	}
	if len(requested) == 0 {
		return nil, nil
	}
	seg := segmentFromDecision(t, decision)
	for _, name := range requested {
		if t.Step(name) == nil {
			return nil, &ExpansionError{Kind: "decision", Step: decision, Message: fmt.Sprintf("step %q is not in the template", name)}
		}
		if !seg.steps[name] {
			return nil, &ExpansionError{Kind: "decision", Step: decision,
				Message: fmt.Sprintf("step %q is not a descendant of decision point %q", name, decision)}
		}
	}
	set := map[string]bool{}
	for _, n := range requested {
		set[n] = true
	}
	for _, e := range seg.exits {
		set[e] = true
	}

	inSegment := map[string][]string{}
	for _, s := range t.Steps {
		if !seg.steps[s.Name] {
			continue
		}
		for _, d := range s.Dependencies {
			inSegment[d] = append(inSegment[d], s.Name)
		}
	}
	frontier := make([]string, 0, len(set))
	for n := range set {
		frontier = append(frontier, n)
	}
	for len(frontier) > 0 {
		cur := frontier[len(frontier)-1]
		frontier = frontier[:len(frontier)-1]
		for _, dep := range inSegment[cur] {
			if set[dep] {
				continue
			}
			def := t.Step(dep)
			if def == nil || def.Type == template.StepDeferredConvergence || def.Type == template.StepBatchWorker {
				continue
			}
			set[dep] = true
			frontier = append(frontier, dep)
		}
	}

	var convergence []string
	for _, s := range t.Steps {
		if s.Type != template.StepDeferredConvergence {
			continue
		}
		for _, d := range s.Dependencies {
			if set[d] {
				set[s.Name] = true
				convergence = append(convergence, s.Name)
				break
			}
		}
	}
	all := dependentsOf(t)
	frontier = convergence
	for len(frontier) > 0 {
		cur := frontier[len(frontier)-1]
		frontier = frontier[:len(frontier)-1]
		for _, dep := range all[cur] {
			if set[dep] {
				continue
			}
			def := t.Step(dep)
			if def == nil {
				continue
			}
			ok := true
			for _, d := range def.Dependencies {
				if !set[d] && d != decision {
					ok = false
					break
				}
			}
			if ok {
				set[dep] = true
				frontier = append(frontier, dep)
			}
		}
	}
	out := make([]string, 0, len(set))
	for _, s := range t.Steps {
		if set[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

// expandDecision applies a decision step's outcome (tasker-core §5.6): it creates the planned
// steps (no transition rows: they read as pending) and their 'provides' edges, each cycle
// checked: from a dependency created in this pass; a deferred_convergence step skips
// dependencies that were not created (intersection semantics); any other step gets its
// missing dependency from the decision step itself.
func (o *Orchestrator) expandDecision(ctx context.Context, tx pgx.Tx, task *taskRow, tmpl *template.TaskTemplate, def *template.StepDefinition, step *stepRow, res protocol.StepExecutionResult) ([]string, error) {
	outcome, ok, err := protocol.DecisionOutcomeFromResult(res.Result)
	if err != nil {
		return nil, &ExpansionError{Kind: "decision", Step: def.Name, Message: "unparsable decision_point_outcome: " + err.Error()}
	}
	if !ok {
		return nil, &ExpansionError{Kind: "decision", Step: def.Name, Message: "result has no decision_point_outcome"}
	}
	if outcome.Type == protocol.DecisionNoBranches {
		return nil, nil
	}
	names, err := planDecision(tmpl, def.Name, outcome.StepNames, o.cfg.MaxDecisionSteps)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	specs := make([]newStep, len(names))
	for i, n := range names {
		specs[i] = stepFromDefinition(tmpl.Step(n))
	}
	created, err := createSteps(ctx, tx, task.TaskUUID, specs)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		sd := tmpl.Step(n)
		for _, dep := range sd.Dependencies {
			from, fromName := created[dep], dep
			if from == uuid.Nil {
				if sd.Type == template.StepDeferredConvergence {
					continue
				}
				from, fromName = step.StepUUID, def.Name
			}
			if err := addEdge(ctx, tx, from, created[n], edgeProvides, fromName, n, true); err != nil {
				return nil, err
			}
		}
	}
	return names, nil
}

// expandBatch applies a batchable step's outcome (tasker-core §5.7): batch workers named
// <worker template>_<batch_id>, each a standard step whose inputs are the worker template's
// initialization merged with BatchWorkerInputs; the deferred_convergence steps that depend on
// the worker template; edges batchable → worker ('batch_dependency') and worker → convergence
// ('worker_to_convergence'). no_batches creates the single placeholder <template>_000
// (is_no_op, cursor 0..0), naming the worker template by the batchable step's
// handler.initialization.worker_template_name. It does nothing if the batchable step already
// has a batch_dependency edge (the outcome was applied before).
func (o *Orchestrator) expandBatch(ctx context.Context, tx pgx.Tx, task *taskRow, tmpl *template.TaskTemplate, def *template.StepDefinition, step *stepRow, res protocol.StepExecutionResult) ([]string, error) {
	fail := func(format string, args ...any) error {
		return &ExpansionError{Kind: "batch", Step: def.Name, Message: fmt.Sprintf(format, args...)}
	}
	outcome, ok, err := protocol.BatchOutcomeFromResult(res.Result)
	if err != nil {
		return nil, fail("unparsable batch_processing_outcome: %v", err)
	}
	if !ok {
		return nil, fail("result has no batch_processing_outcome")
	}
	var done bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tasker.workflow_step_edges
		WHERE from_step_uuid = $1 AND name = $2)`, step.StepUUID, edgeBatchDependency).Scan(&done); err != nil {
		return nil, fmt.Errorf("orchestration: batch idempotency check: %w", err)
	}
	if done {
		return nil, nil
	}

	var (
		workerName string
		cursors    []protocol.CursorConfig
		noOp       bool
	)
	switch outcome.Type {
	case protocol.BatchCreateBatches:
		workerName, cursors = outcome.WorkerTemplateName, outcome.CursorConfigs
		if len(cursors) == 0 {
			return nil, fail("cursor_configs cannot be empty for create_batches")
		}
	case protocol.BatchNoBatches:
		raw, ok := def.Handler.Initialization["worker_template_name"]
		if !ok || json.Unmarshal(raw, &workerName) != nil || workerName == "" {
			return nil, fail("no_batches needs handler.initialization.worker_template_name on the batchable step")
		}
		cursors, noOp = []protocol.CursorConfig{protocol.NoOpCursorConfig()}, true
	default:
		return nil, fail("unknown outcome type %q", outcome.Type)
	}
	worker := tmpl.Step(workerName)
	if worker == nil {
		return nil, fail("worker template %q not found", workerName)
	}
	if worker.Type != template.StepBatchWorker {
		return nil, fail("worker template %q is a %s step, not batch_worker", workerName, worker.Type)
	}
	if worker.BatchConfig == nil {
		return nil, fail("worker template %q has no batch_config", workerName)
	}
	strategy := protocol.FailureStrategy(worker.BatchConfig.FailureStrategy)
	if strategy == "" {
		strategy = protocol.ContinueOnFailure
	}

	var specs []newStep
	var workerNames []string
	seen := map[string]bool{}
	for _, c := range cursors {
		name := worker.Name + "_" + c.BatchID
		if seen[name] {
			return nil, fail("duplicate batch_id %q", c.BatchID)
		}
		seen[name] = true
		inputs, err := protocol.BatchWorkerInputs{
			Cursor:           c,
			BatchMetadata:    protocol.BatchMetadata{CursorField: worker.BatchConfig.CursorField, FailureStrategy: strategy},
			IsNoOp:           noOp,
			TemplateStepName: worker.Name,
		}.MergeInto(worker.Handler.Initialization)
		if err != nil {
			return nil, fail("worker inputs: %v", err)
		}
		specs = append(specs, newStep{Name: name, Retryable: worker.Retry.Retryable, MaxAttempts: worker.Retry.MaxAttempts, Inputs: inputs})
		workerNames = append(workerNames, name)
	}
	var convergence []string
	for i := range tmpl.Steps {
		s := &tmpl.Steps[i]
		if s.Type == template.StepDeferredConvergence && slices.Contains(s.Dependencies, worker.Name) {
			specs = append(specs, stepFromDefinition(s))
			convergence = append(convergence, s.Name)
		}
	}
	created, err := createSteps(ctx, tx, task.TaskUUID, specs)
	if err != nil {
		return nil, err
	}
	for _, w := range workerNames {
		if err := addEdge(ctx, tx, step.StepUUID, created[w], edgeBatchDependency, step.Name, w, false); err != nil {
			return nil, err
		}
	}
	for _, c := range convergence {
		for _, w := range workerNames {
			if err := addEdge(ctx, tx, created[w], created[c], edgeWorkerToConvergence, w, c, false); err != nil {
				return nil, err
			}
		}
	}
	return append(workerNames, convergence...), nil
}
