package orchestration

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Sentinel errors callers branch on (match with errors.Is).
var (
	// ErrTemplateNotFound: no registered template matches the request's namespace/name/version
	// (or it has no configuration). Returned wrapped in *TemplateNotFoundError.
	ErrTemplateNotFound = errors.New("orchestration: task template not found")
	// ErrDuplicateTask: a task with the same identity hash exists (tasker-core answers 409).
	ErrDuplicateTask = errors.New("orchestration: a task with this identity already exists")
	// ErrInvalidRequest: the task request is malformed. Returned wrapped in *ValidationError.
	ErrInvalidRequest = errors.New("orchestration: invalid task request")
	// ErrTaskNotFound: no task has the given uuid.
	ErrTaskNotFound = errors.New("orchestration: task not found")
	// ErrTaskTerminal: the task is already complete, error, cancelled or resolved_manually.
	ErrTaskTerminal = errors.New("orchestration: task is in a terminal state")
)

// TemplateNotFoundError names the template a request asked for.
type TemplateNotFoundError struct {
	Namespace, Name, Version string
	Err                      error // the lookup's error
}

func (e *TemplateNotFoundError) Error() string {
	v := e.Version
	if v == "" {
		v = "latest"
	}
	msg := fmt.Sprintf("orchestration: task template %s/%s/%s not found; templates must be registered (by a worker) before tasks can be created", e.Namespace, e.Name, v)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes ErrTemplateNotFound and the lookup error.
func (e *TemplateNotFoundError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrTemplateNotFound}
	}
	return []error{ErrTemplateNotFound, e.Err}
}

// FieldProblem is one thing wrong with a request field. Field is a dotted path such as
// "context.items[0].qty" or "priority".
type FieldProblem struct {
	Field   string
	Message string
}

// ValidationError lists what is wrong with a task request. Nothing was written.
type ValidationError struct {
	Problems []FieldProblem
	Err      error // underlying error (e.g. *template.ContextError), may be nil
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Message
	}
	return "orchestration: invalid task request: " + strings.Join(parts, "; ")
}

// Unwrap exposes ErrInvalidRequest and the underlying error.
func (e *ValidationError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidRequest}
	}
	return []error{ErrInvalidRequest, e.Err}
}

// Fields returns the names of the failing fields.
func (e *ValidationError) Fields() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Field
	}
	return out
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Problems: []FieldProblem{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// DuplicateTaskError carries the identity hash that collided.
type DuplicateTaskError struct {
	IdentityHash string
}

func (e *DuplicateTaskError) Error() string {
	return ErrDuplicateTask.Error() + " (identity_hash " + e.IdentityHash + ")"
}

// Unwrap returns ErrDuplicateTask.
func (e *DuplicateTaskError) Unwrap() error { return ErrDuplicateTask }

// CycleError reports an edge that would close a cycle in a task's step graph.
type CycleError struct {
	From, To         string // step names
	FromUUID, ToUUID uuid.UUID
}

func (e *CycleError) Error() string {
	return fmt.Sprintf("orchestration: cycle detected: adding edge %q -> %q would create a cycle", e.From, e.To)
}

// ExpansionError reports a decision or batch outcome that could not be applied because it
// contradicts the template (unknown or non-descendant step, missing worker template, ...).
// Like tasker-core, the orchestrator logs it and leaves the graph unchanged.
type ExpansionError struct {
	Kind    string // "decision" or "batch"
	Step    string // the decision / batchable step name
	Message string
}

func (e *ExpansionError) Error() string {
	return fmt.Sprintf("orchestration: %s outcome of step %q: %s", e.Kind, e.Step, e.Message)
}
