package orchestration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
)

// TaskRequest asks for a task; its JSON form is tasker-core's TaskRequest (POST /v1/tasks).
type TaskRequest struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Version selects the template version; "" or "latest" picks the most recently registered.
	Version string `json:"version"`
	// Context is the task's input (any JSON; absent or null is stored as {}).
	Context      json.RawMessage `json:"context"`
	Initiator    string          `json:"initiator"`     // default "system"
	SourceSystem string          `json:"source_system"` // default "tasker-go"
	Reason       string          `json:"reason"`        // default "Task requested"
	Tags         []string        `json:"tags"`
	// Priority is -100..100 (default 0); it orders readiness work.
	Priority int32 `json:"priority"`
	// CorrelationID defaults to a new UUIDv7.
	CorrelationID       *uuid.UUID `json:"correlation_id,omitempty"`
	ParentCorrelationID *uuid.UUID `json:"parent_correlation_id,omitempty"`
	// IdempotencyKey, when set, replaces the context in the identity hash (tasker-core's
	// documented precedence; its HEAD code ignores the key).
	IdempotencyKey *string `json:"idempotency_key,omitempty"`
	// RequestedAt defaults to now.
	RequestedAt time.Time `json:"-"`
	// Options is accepted for compatibility and not used (as in tasker-core).
	Options map[string]json.RawMessage `json:"options,omitempty"`
}

type taskRequestJSON TaskRequest

// DecodeTaskRequest decodes an encoded TaskRequest (tasker-core's JSON). A request over
// protocol.MaxTaskRequestBytes is refused before it is parsed. Errors are *ValidationError with
// the field "request"; an oversized request's also matches protocol.ErrTooLarge.
func DecodeTaskRequest(data []byte) (TaskRequest, error) {
	var req TaskRequest
	if err := req.UnmarshalJSON(data); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return TaskRequest{}, ve
		}
		return TaskRequest{}, &ValidationError{Problems: []FieldProblem{{Field: "request", Message: "invalid JSON: " + err.Error()}}, Err: err}
	}
	return req, nil
}

// ReadTaskRequest reads and decodes a TaskRequest from r (an HTTP body, a file, standard
// input), reading at most protocol.MaxTaskRequestBytes+1 bytes: a longer stream is refused
// without being read whole. Errors are those of DecodeTaskRequest, or r's read error.
func ReadTaskRequest(r io.Reader) (TaskRequest, error) {
	data, err := protocol.ReadLimited(r, "task request", protocol.MaxTaskRequestBytes)
	var se *protocol.SizeError
	if errors.As(err, &se) {
		return TaskRequest{}, tooLarge("request", se)
	}
	if err != nil {
		return TaskRequest{}, fmt.Errorf("orchestration: %w", err)
	}
	return DecodeTaskRequest(data)
}

// UnmarshalJSON reads tasker-core's JSON, where requested_at is a naive UTC timestamp
// ("2026-03-21T21:16:08.123") or RFC 3339. Input over protocol.MaxTaskRequestBytes is refused
// unparsed with a *ValidationError.
func (r *TaskRequest) UnmarshalJSON(b []byte) error {
	if n := int64(len(b)); n > protocol.MaxTaskRequestBytes {
		return tooLarge("request", &protocol.SizeError{What: "task request", Size: n, Limit: protocol.MaxTaskRequestBytes})
	}
	var aux struct {
		taskRequestJSON
		RequestedAt *protocol.NaiveTime `json:"requested_at"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*r = TaskRequest(aux.taskRequestJSON)
	if aux.RequestedAt != nil {
		r.RequestedAt = aux.RequestedAt.Time
	}
	return nil
}

// MarshalJSON writes requested_at as tasker-core's naive UTC timestamp (omitted when zero).
func (r TaskRequest) MarshalJSON() ([]byte, error) {
	aux := struct {
		taskRequestJSON
		RequestedAt *protocol.NaiveTime `json:"requested_at,omitempty"`
	}{taskRequestJSON: taskRequestJSON(r)}
	if !r.RequestedAt.IsZero() {
		t := protocol.NewNaiveTime(r.RequestedAt)
		aux.RequestedAt = &t
	}
	return json.Marshal(aux)
}

// CreatedTask describes a task CreateTask wrote.
type CreatedTask struct {
	TaskUUID      uuid.UUID
	NamedTaskUUID uuid.UUID
	CorrelationID uuid.UUID
	Namespace     string
	Name          string
	Version       string // the resolved template version
	IdentityHash  string
	State         state.TaskState      // steps_in_process, or complete when nothing was ready
	Steps         map[string]uuid.UUID // workflow steps created, by name
	EnqueuedSteps []uuid.UUID          // steps dispatched to workers
}

// Limits of tasks columns.
const (
	maxAuditFieldLen = 128 // initiator, source_system, reason: varchar(128)
	minPriority      = -100
	maxPriority      = 100
)

// identity strategies (tasker.identity_strategy).
const (
	identityStrict         = "strict"
	identityCallerProvided = "caller_provided"
	identityAlwaysUnique   = "always_unique"
)

// CreateTask validates req against its registered template and creates the task in ONE
// transaction: the tasks row, the initial steps (template initial_step_set: no batch_worker
// templates, no deferred_convergence steps, nothing below a decision point), their named_steps
// (found or created), 'provides' edges between them (cycle checked), the initial pending
// transitions (tasker-core's metadata, this orchestrator's processor_uuid), and then the first
// dispatch: pending → initializing → enqueuing_steps (ReadyStepsFound(n)), the ready steps
// pending → enqueued with their worker messages, → steps_in_process (StepsEnqueued); or →
// complete (NoStepsFound) when nothing is ready.
//
// Invariant: a task exists only together with its steps, edges and first dispatch. tasker-core
// commits the task first and enqueues afterwards, so a crash in between leaves a pending task,
// and a step that finishes before the task reaches steps_in_process finds it still in
// enqueuing_steps, where its result is ignored (a lost wake-up). Doing it in one transaction
// removes both: no result can be processed before the commit that makes the task
// steps_in_process, since workers only see the messages at that commit.
//
// Errors: *TemplateNotFoundError (ErrTemplateNotFound), *ValidationError (ErrInvalidRequest;
// the context is checked against the template's input_schema, which tasker-core does not do,
// and against tasker-core's JSON size/depth limits; a request whose data is over
// protocol.MaxTaskRequestBytes is refused before its context is parsed, with an error that also
// matches protocol.ErrTooLarge), *DuplicateTaskError (ErrDuplicateTask). On any error nothing
// is written.
func (o *Orchestrator) CreateTask(ctx context.Context, req TaskRequest) (*CreatedTask, error) {
	in, err := normalizeRequest(req)
	if err != nil {
		return nil, err
	}
	if err := o.EnsureQueues(ctx); err != nil { // workers' results must have somewhere to go
		return nil, err
	}
	tx, err := o.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit

	tmpl, nt, err := template.LookupNamedTask(ctx, tx, req.Namespace, req.Name, req.Version)
	if errors.Is(err, template.ErrTemplateNotFound) || errors.Is(err, template.ErrNoConfiguration) {
		return nil, &TemplateNotFoundError{Namespace: req.Namespace, Name: req.Name, Version: req.Version, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("orchestration: look up template: %w", err)
	}
	if err := template.ValidateContext(tmpl, in.context); err != nil {
		var ce *template.ContextError
		if errors.As(err, &ce) {
			ve := &ValidationError{Err: err}
			for _, p := range ce.Problems {
				ve.Problems = append(ve.Problems, FieldProblem{Field: joinPath("context", p.Path), Message: p.Message})
			}
			return nil, ve
		}
		return nil, fmt.Errorf("orchestration: template %s has an unusable input_schema: %w", tmpl.Key(), err)
	}
	initial := tmpl.InitialStepSet()
	if len(initial) == 0 {
		return nil, fmt.Errorf("orchestration: template %s has no steps to create", tmpl.Key())
	}

	namedTask, strategy := nt.UUID, nt.IdentityStrategy
	var hash string
	switch {
	case req.IdempotencyKey != nil && *req.IdempotencyKey != "":
		hash = identityHash(namedTask, identityTagKey, []byte(*req.IdempotencyKey))
	case strategy == identityCallerProvided:
		return nil, invalid("idempotency_key", "required: template %s uses the caller_provided identity strategy", tmpl.Key())
	case strategy == identityAlwaysUnique:
		id := uuid.Must(uuid.NewV7())
		hash = identityHash(namedTask, identityTagUnique, id[:])
	default:
		hash = identityHash(namedTask, identityTagContext, in.context)
	}

	out := &CreatedTask{
		NamedTaskUUID: namedTask, CorrelationID: in.correlationID, IdentityHash: hash,
		Namespace: tmpl.NamespaceName, Name: tmpl.Name, Version: tmpl.Version,
	}
	if err := checkInitialCycles(initial); err != nil {
		return nil, err
	}
	// The task insert travels with the named steps' read; a conflict on identity_hash inserts
	// nothing and returns no row: a duplicate.
	inserted := false
	tx.Pending().Queue(`
		INSERT INTO tasker.tasks (named_task_uuid, complete, requested_at, initiator, source_system, reason,
		                          tags, context, identity_hash, priority, correlation_id, parent_correlation_id,
		                          created_at, updated_at)
		VALUES ($1, false, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, NOW(), NOW())
		ON CONFLICT (identity_hash) DO NOTHING
		RETURNING task_uuid`,
		namedTask, in.requestedAt, in.initiator, in.sourceSystem, in.reason, string(in.tags), string(in.context),
		hash, req.Priority, in.correlationID, req.ParentCorrelationID).Fn = func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&out.TaskUUID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("orchestration: insert task: %w", err)
		}
		inserted = true
		return nil
	}
	names := make([]string, len(initial))
	for i, def := range initial {
		names[i] = def.Name
	}
	named, err := ensureNamedSteps(ctx, tx, names)
	if err != nil {
		return nil, err
	}
	if !inserted {
		return nil, &DuplicateTaskError{IdentityHash: hash}
	}

	// Everything below is new in this transaction (no other can see it), so steps, edges and
	// the initial transitions are queued without locks or reads and travel with the first read
	// of advance.
	b := tx.Pending()
	out.Steps = make(map[string]uuid.UUID, len(initial))
	for _, def := range initial {
		id, err := queueNewStep(b, out.TaskUUID, named[def.Name], stepFromDefinition(def))
		if err != nil {
			return nil, err
		}
		out.Steps[def.Name] = id
	}
	for _, def := range initial {
		for _, dep := range def.Dependencies {
			if _, ok := out.Steps[dep]; ok {
				queueEdge(b, out.Steps[dep], out.Steps[def.Name], edgeProvides, dep, def.Name)
			}
		}
	}
	initTr, err := state.QueueInitialTaskTransition(b, out.TaskUUID, o.cfg.ProcessorUUID, nil)
	if err != nil {
		return nil, err
	}
	for _, def := range initial {
		if _, err := state.QueueInitialStepTransition(b, out.Steps[def.Name], nil); err != nil {
			return nil, err
		}
	}

	task := &taskRow{TaskUUID: out.TaskUUID, NamedTaskUUID: namedTask, CorrelationID: in.correlationID,
		Namespace: tmpl.NamespaceName, Name: tmpl.Name, Version: tmpl.Version, Head: initTr.Head()}
	log := o.log.With("task_uuid", out.TaskUUID, "correlation_id", in.correlationID)
	if out.State, err = o.advance(ctx, tx, task, log); err != nil {
		return nil, err
	}
	out.EnqueuedSteps = task.dispatched
	slices.SortFunc(out.EnqueuedSteps, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("orchestration: commit task: %w", err)
	}
	o.metrics.taskCreated(task)
	log.Info("task created", "namespace", out.Namespace, "name", out.Name, "version", out.Version,
		"steps", len(out.Steps), "enqueued", len(out.EnqueuedSteps), "state", out.State)
	return out, nil
}

// normalizedRequest holds the validated, defaulted request values.
type normalizedRequest struct {
	context       []byte // canonical JSON
	tags          []byte // JSON array
	initiator     string
	sourceSystem  string
	reason        string
	correlationID uuid.UUID
	requestedAt   time.Time
}

// normalizeRequest checks everything that needs no database and fills defaults.
func normalizeRequest(req TaskRequest) (normalizedRequest, error) {
	var (
		n  normalizedRequest
		ve ValidationError
	)
	// Before anything is decoded or copied: bad input must cost little.
	if field, size := requestSize(req); size > protocol.MaxTaskRequestBytes {
		return n, tooLarge(field, &protocol.SizeError{What: "task " + field, Size: size, Limit: protocol.MaxTaskRequestBytes})
	}
	add := func(field, format string, args ...any) {
		ve.Problems = append(ve.Problems, FieldProblem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if req.Name == "" {
		add("name", "required")
	}
	var badNS *queue.NameError
	if req.Namespace == "" {
		add("namespace", "required")
	} else if errors.As(queue.ValidateNamespace(req.Namespace), &badNS) {
		add("namespace", "%s", badNS.Reason)
	}
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	n.initiator = def(req.Initiator, "system")
	n.sourceSystem = def(req.SourceSystem, "tasker-go")
	n.reason = def(req.Reason, "Task requested")
	for _, f := range [...]struct{ field, v string }{{"initiator", n.initiator}, {"source_system", n.sourceSystem}, {"reason", n.reason}} {
		if l := utf8.RuneCountInString(f.v); l > maxAuditFieldLen {
			add(f.field, "%d characters, more than %d", l, maxAuditFieldLen)
		}
	}
	if req.Priority < minPriority || req.Priority > maxPriority {
		add("priority", "%d is outside %d..%d", req.Priority, minPriority, maxPriority)
	}

	raw := req.Context
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage(`{}`)
	}
	if v, err := decodeJSON(raw); err != nil {
		add("context", "invalid JSON: %v", err)
	} else if canon, err := canonicalJSON(v); err != nil {
		add("context", "cannot encode: %v", err)
	} else if p := checkJSONLimits("context", v, canon); p != nil {
		ve.Problems = append(ve.Problems, *p)
	} else {
		n.context = canon
	}

	tags := req.Tags
	if tags == nil {
		tags = []string{}
	}
	tagVals := make([]any, len(tags))
	for i, t := range tags {
		tagVals[i] = t
	}
	if canon, err := canonicalJSON(tagVals); err != nil {
		add("tags", "cannot encode: %v", err)
	} else if p := checkJSONLimits("tags", tagVals, canon); p != nil {
		ve.Problems = append(ve.Problems, *p)
	} else {
		n.tags = canon
	}

	n.correlationID = uuid.Must(uuid.NewV7())
	if req.CorrelationID != nil && *req.CorrelationID != uuid.Nil {
		n.correlationID = *req.CorrelationID
	}
	n.requestedAt = req.RequestedAt.UTC()
	if req.RequestedAt.IsZero() {
		n.requestedAt = time.Now().UTC()
	}
	if len(ve.Problems) > 0 {
		return n, &ve
	}
	return n, nil
}

// requestSize is the size of req's data in bytes (strings and raw JSON, without the JSON
// punctuation around them). field is "context" when the context alone is over the limit, else
// "request".
func requestSize(req TaskRequest) (field string, size int64) {
	size = int64(len(req.Context))
	if size > protocol.MaxTaskRequestBytes {
		return "context", size
	}
	for _, s := range [...]string{req.Name, req.Namespace, req.Version, req.Initiator, req.SourceSystem, req.Reason} {
		size += int64(len(s))
	}
	for _, t := range req.Tags {
		size += int64(len(t))
	}
	for k, v := range req.Options {
		size += int64(len(k) + len(v))
	}
	if req.IdempotencyKey != nil {
		size += int64(len(*req.IdempotencyKey))
	}
	return "request", size
}

// tooLarge is the *ValidationError of an input refused for its size.
func tooLarge(field string, se *protocol.SizeError) *ValidationError {
	return &ValidationError{Problems: []FieldProblem{{Field: field, Message: se.Error()}}, Err: se}
}

// checkInitialCycles refuses an initial step set whose dependencies form a cycle (a template
// read from the database is not validated), as addEdge's check would, edge by edge in creation
// order: the first edge that would close a cycle is reported.
func checkInitialCycles(initial []*template.StepDefinition) error {
	inSet := make(map[string]bool, len(initial))
	for _, def := range initial {
		inSet[def.Name] = true
	}
	children := map[string][]string{}
	reaches := func(from, to string) bool {
		seen := map[string]bool{}
		stack := []string{from}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if n == to {
				return true
			}
			if !seen[n] {
				seen[n] = true
				stack = append(stack, children[n]...)
			}
		}
		return false
	}
	for _, def := range initial {
		for _, dep := range def.Dependencies {
			if !inSet[dep] {
				continue
			}
			if dep == def.Name || reaches(def.Name, dep) {
				return &CycleError{From: dep, To: def.Name}
			}
			children[dep] = append(children[dep], def.Name)
		}
	}
	return nil
}
