// Package handlertest runs step handlers in unit tests, without a database or a worker: it
// builds the hydrated step a worker would hand a handler (from a task template file or by
// hand), with a task context and the results of finished ancestors, runs the handler, and
// asserts on its outcome as the orchestrator would read it.
//
//	out := handlertest.FromTemplateFile("../templates/linear_workflow.yaml", "linear_step_2").
//		Context(map[string]any{"even_number": 6}).
//		Dependency("linear_step_1", 36).
//		Run(t, handler)
//	if got := handlertest.DecodeOutput[int64](out); got != 1296 { … }
//
// Failures are checked with RequireFailure and RequireCode; a checkpoint yield with
// RequireYield, and Resume runs the handler again with that checkpoint, as the worker does.
package handlertest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/template"
)

// Step builds a hydrated step. Its setters return the Step for chaining; a setter's error (a
// value that is not JSON-encodable, an unknown template step) is reported by Build or Run.
// Values given as json.RawMessage are used as they are, so json.RawMessage(`{"a":1}`) passes
// JSON text.
type Step struct {
	seq    protocol.TaskSequenceStep
	logger *slog.Logger
	err    error
}

// NewStep is a standard step named callable whose handler.callable is callable, in task
// "test" 1.0.0 of namespace "test", with an empty task context, never attempted.
func NewStep(callable string) *Step {
	taskUUID := uuid.Must(uuid.NewV7())
	return &Step{seq: protocol.TaskSequenceStep{
		Task: protocol.TaskForOrchestration{
			Task: protocol.Task{TaskUUID: taskUUID, CorrelationID: uuid.Must(uuid.NewV7()),
				Context: json.RawMessage(`{}`), CreatedAt: protocol.NewNaiveTime(time.Now())},
			TaskName:      "test",
			TaskVersion:   "1.0.0",
			NamespaceName: "test",
		},
		WorkflowStep: protocol.WorkflowStepWithName{
			WorkflowStepUUID: uuid.Must(uuid.NewV7()),
			TaskUUID:         taskUUID,
			Name:             callable,
			TemplateStepName: callable,
		},
		StepDefinition: protocol.StepDefinition{Name: callable, Handler: protocol.HandlerDefinition{Callable: callable}},
	}}
}

// FromTemplate is step stepName of tmpl as the orchestrator creates it: the template's step
// definition, workflow_steps.inputs set to its handler.initialization, retryable and
// max_attempts from its retry block, and the template's task name, version and namespace.
func FromTemplate(tmpl *template.TaskTemplate, stepName string) *Step {
	s := NewStep(stepName)
	if tmpl == nil {
		return s.fail(fmt.Errorf("handlertest: nil template"))
	}
	sd := tmpl.Step(stepName)
	if sd == nil {
		names := make([]string, len(tmpl.Steps))
		for i, st := range tmpl.Steps {
			names[i] = st.Name
		}
		return s.fail(fmt.Errorf("handlertest: template %s has no step %q (steps: %s)", tmpl.Key(), stepName, strings.Join(names, ", ")))
	}
	def, err := StepDefinition(*sd)
	if err != nil {
		return s.fail(err)
	}
	s.seq.StepDefinition = def
	s.seq.Task.TaskName, s.seq.Task.TaskVersion, s.seq.Task.NamespaceName = tmpl.Name, tmpl.Version, tmpl.NamespaceName
	s.seq.WorkflowStep.Retryable = sd.Retry.Retryable
	maxAttempts := int32(sd.Retry.MaxAttempts)
	s.seq.WorkflowStep.MaxAttempts = &maxAttempts
	if len(sd.Handler.Initialization) > 0 {
		s.Inputs(sd.Handler.Initialization)
	}
	return s
}

// FromTemplateFile is FromTemplate over the template in path (template.LoadFile: parsed and
// validated).
func FromTemplateFile(path, stepName string) *Step {
	tmpl, err := template.LoadFile(path)
	if err != nil {
		return NewStep(stepName).fail(fmt.Errorf("handlertest: %w", err))
	}
	return FromTemplate(tmpl, stepName)
}

// StepDefinition converts a template step to the definition a handler sees
// (StepContext.Definition), as the worker reads it back from named_tasks.
func StepDefinition(sd template.StepDefinition) (protocol.StepDefinition, error) {
	var def protocol.StepDefinition
	data, err := json.Marshal(sd)
	if err == nil {
		err = json.Unmarshal(data, &def)
	}
	if err != nil {
		return def, fmt.Errorf("handlertest: step %s definition: %w", sd.Name, err)
	}
	return def, nil
}

func (s *Step) fail(err error) *Step {
	if s.err == nil {
		s.err = err
	}
	return s
}

// encode marshals v for field what, recording a failure.
func (s *Step) encode(what string, v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		s.fail(fmt.Errorf("handlertest: %s: %w", what, err))
		return nil
	}
	return data
}

// Context sets the task context (the task request's input).
func (s *Step) Context(v any) *Step {
	s.seq.Task.Task.Context = s.encode("task context", v)
	return s
}

// Dependency adds a finished ancestor step whose handler output (its "result") is output.
func (s *Step) Dependency(name string, output any) *Step {
	return s.DependencyResult(name, protocol.Success(uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)), s.encode("dependency "+name, output), 1, nil))
}

// DependencyResult adds a finished ancestor step with its whole stored result.
func (s *Step) DependencyResult(name string, res protocol.StepExecutionResult) *Step {
	if s.seq.DependencyResults == nil {
		s.seq.DependencyResults = map[string]protocol.StepExecutionResult{}
	}
	s.seq.DependencyResults[name] = res
	return s
}

// Inputs sets workflow_steps.inputs (for a batch worker: its cursor and batch metadata).
func (s *Step) Inputs(v any) *Step {
	s.seq.WorkflowStep.Inputs = s.encode("step inputs", v)
	return s
}

// Initialization replaces handler.initialization with v, a JSON object.
func (s *Step) Initialization(v any) *Step {
	var m map[string]json.RawMessage
	if data := s.encode("handler.initialization", v); data != nil {
		if err := json.Unmarshal(data, &m); err != nil {
			return s.fail(fmt.Errorf("handlertest: handler.initialization must be an object: %w", err))
		}
	}
	s.seq.StepDefinition.Handler.Initialization = m
	return s
}

// Config sets one handler.initialization entry.
func (s *Step) Config(key string, v any) *Step {
	h := &s.seq.StepDefinition.Handler
	m := maps.Clone(h.Initialization)
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	m[key] = s.encode("handler.initialization "+key, v)
	h.Initialization = m
	return s
}

// Name sets the step's name (e.g. a batch worker's "<template step>_<batch id>"); the template
// step name stays what it was.
func (s *Step) Name(name string) *Step {
	s.seq.WorkflowStep.Name = name
	return s
}

// StepUUID sets workflow_steps.workflow_step_uuid (a fresh UUID v7 by default), for handlers
// that derive identifiers from it.
func (s *Step) StepUUID(id uuid.UUID) *Step {
	s.seq.WorkflowStep.WorkflowStepUUID = id
	return s
}

// TaskUUID sets the task's UUID (a fresh UUID v7 by default).
func (s *Step) TaskUUID(id uuid.UUID) *Step {
	s.seq.Task.Task.TaskUUID, s.seq.WorkflowStep.TaskUUID = id, id
	return s
}

// Method sets handler.method.
func (s *Step) Method(method string) *Step {
	s.seq.StepDefinition.Handler.Method = method
	return s
}

// Attempts sets workflow_steps.attempts as loaded before the claim (0 on a first execution).
func (s *Step) Attempts(n int32) *Step {
	s.seq.WorkflowStep.Attempts = &n
	return s
}

// MaxAttempts sets workflow_steps.max_attempts.
func (s *Step) MaxAttempts(n int32) *Step {
	s.seq.WorkflowStep.MaxAttempts = &n
	return s
}

// Checkpoint sets workflow_steps.checkpoint (a protocol.CheckpointYieldData, or its JSON).
func (s *Step) Checkpoint(v any) *Step {
	s.seq.WorkflowStep.Checkpoint = s.encode("checkpoint", v)
	return s
}

// Logger sets the base logger of the StepContext (default slog.Default()).
func (s *Step) Logger(l *slog.Logger) *Step {
	s.logger = l
	return s
}

// Sequence returns the hydrated data built so far (its maps are shared with s: do not modify).
func (s *Step) Sequence() protocol.TaskSequenceStep { return s.seq }

// Build returns the StepContext, failing tb if a setter failed.
func (s *Step) Build(tb testing.TB) *handlers.StepContext {
	tb.Helper()
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return handlers.NewStepContext(s.seq, handlers.WithLogger(s.logger))
}
