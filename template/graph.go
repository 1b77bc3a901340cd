package template

import (
	"encoding/json"
	"fmt"
	"maps"
)

// DecisionDescendants returns the names of steps that transitively depend on a decision step.
// The orchestrator creates those when the decision runs, not at task creation.
func (t *TaskTemplate) DecisionDescendants() map[string]bool {
	dependents := map[string][]string{}
	for _, s := range t.Steps {
		for _, d := range s.Dependencies {
			dependents[d] = append(dependents[d], s.Name)
		}
	}
	out := map[string]bool{}
	var queue []string
	for _, s := range t.Steps {
		if s.Type == StepDecision {
			queue = append(queue, dependents[s.Name]...)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if out[n] {
			continue
		}
		out[n] = true
		queue = append(queue, dependents[n]...)
	}
	return out
}

// InitialStepSet returns the steps created at task creation, with tasker-core's rule
// (TaskTemplate::initial_step_set): without decision steps, every step except batch_worker and
// deferred_convergence steps; with decision steps, every step that is not a decision
// descendant and not a batch_worker (decision steps themselves included). Note the Rust
// quirk kept here: with a decision step present, a deferred_convergence step that does not
// descend from it is created at initialization.
func (t *TaskTemplate) InitialStepSet() []*StepDefinition {
	hasDecision := false
	for _, s := range t.Steps {
		if s.Type == StepDecision {
			hasDecision = true
			break
		}
	}
	var desc map[string]bool
	if hasDecision {
		desc = t.DecisionDescendants()
	}
	var out []*StepDefinition
	for i := range t.Steps {
		s := &t.Steps[i]
		switch {
		case !hasDecision && !s.Type.CreatedAtInitialization():
		case hasDecision && (desc[s.Name] || s.Type == StepBatchWorker):
		default:
			out = append(out, s)
		}
	}
	return out
}

// Clone returns a deep copy.
func (t *TaskTemplate) Clone() (*TaskTemplate, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("template: clone %s: %w", t.Key(), err)
	}
	c, err := ParseJSON(b, t.Source)
	if err != nil {
		return nil, fmt.Errorf("template: clone %s: %w", t.Key(), err)
	}
	return c, nil
}

// ResolveForEnvironment returns a copy with the overrides of environment env applied, as
// tasker-core's resolve_for_environment does: per step (or "ALL"), initialization keys are
// merged over the step's, and timeout_seconds and retry replace the step's when given.
// tasker-core's orchestrator never applies environments; only its worker resolves
// "production" for its local cache.
func (t *TaskTemplate) ResolveForEnvironment(env string) (*TaskTemplate, error) {
	c, err := t.Clone()
	if err != nil {
		return nil, err
	}
	o, ok := c.Environments[env]
	if !ok {
		return c, nil
	}
	for _, so := range o.Steps {
		for i := range c.Steps {
			s := &c.Steps[i]
			if so.Name != "ALL" && so.Name != s.Name {
				continue
			}
			if so.Handler != nil && so.Handler.Initialization != nil {
				if s.Handler.Initialization == nil {
					s.Handler.Initialization = map[string]json.RawMessage{}
				}
				maps.Copy(s.Handler.Initialization, so.Handler.Initialization)
			}
			if so.TimeoutSeconds != nil {
				v := *so.TimeoutSeconds
				s.TimeoutSeconds = &v
			}
			if so.Retry != nil {
				s.Retry = *so.Retry
			}
			if so.Name != "ALL" {
				break
			}
		}
	}
	return c, nil
}
