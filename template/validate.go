package template

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits that come from the tasker schema (a longer value would fail the INSERT) or from
// tasker-core's validators.
const (
	maxNamespaceLen     = 29  // PGMQ queue names: 47 chars minus the longest suffix "_domain_events_dlq"
	maxTaskNameLen      = 64  // named_tasks.name varchar(64)
	maxVersionLen       = 16  // named_tasks.version varchar(16)
	maxDescriptionLen   = 255 // named_tasks.description varchar(255)
	maxStepNameLen      = 128 // named_steps.name varchar(128)
	maxCallableLen      = 500
	maxBackoffMs        = 3_600_000
	maxAttemptsLimit    = 100
	maxBatchSize        = 100_000
	maxBatchParallelism = 1000
)

var (
	namespacePattern = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	eventNamePattern = regexp.MustCompile(`^[a-z0-9_.]+$`)
	publisherPattern = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*((::|\.)[a-zA-Z_][a-zA-Z0-9_]*)*$`)
)

// Validate checks everything the orchestrator and workers rely on and returns a
// *ValidationError listing every problem, or nil. It is stricter than tasker-core's own
// validate() (which checks only dependency names and decision parents): it also rejects
// values the database would refuse, dependency cycles, unreachable batch/convergence shapes,
// invalid event declarations and malformed schemas.
func (t *TaskTemplate) Validate() error {
	v := &validator{t: t}
	v.run()
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Source: t.Source, Problems: v.problems}
}

type validator struct {
	t        *TaskTemplate
	problems []Problem
	byName   map[string]int // step name -> first index
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) maxLen(path, s string, n int, why string) {
	if utf8.RuneCountInString(s) > n {
		if why != "" {
			v.add(path, "must be at most %d characters (%s)", n, why)
		} else {
			v.add(path, "must be at most %d characters", n)
		}
	}
}

func (v *validator) run() {
	t := v.t
	v.top()
	v.schema("input_schema", t.InputSchema, false)
	if len(t.Steps) == 0 {
		v.add("steps", "at least one step is required")
	}
	v.byName = map[string]int{}
	for i := range t.Steps {
		v.step(i)
	}
	v.dependencies()
	v.cycles()
	v.stepTypes()
	v.environments()
	v.lifecycle()
}

func (v *validator) top() {
	t := v.t
	switch {
	case t.Name == "":
		v.add("name", "required")
	default:
		v.maxLen("name", t.Name, maxTaskNameLen, "named_tasks.name is varchar(64)")
	}
	switch ns := t.NamespaceName; {
	case ns == "":
		v.add("namespace_name", "required")
	case len(ns) > maxNamespaceLen:
		v.add("namespace_name", "must be at most %d characters (queue names such as %s_domain_events_dlq must fit PGMQ's 47-character limit)", maxNamespaceLen, ns)
	case !namespacePattern.MatchString(ns):
		v.add("namespace_name", "must contain only letters, digits and underscores")
	case ns[0] >= '0' && ns[0] <= '9':
		v.add("namespace_name", "must start with a letter or underscore")
	}
	switch {
	case t.Version == "":
		v.add("version", "required")
	default:
		v.maxLen("version", t.Version, maxVersionLen, "named_tasks.version is varchar(16)")
	}
	if t.Description != nil {
		v.maxLen("description", *t.Description, maxDescriptionLen, "named_tasks.description is varchar(255)")
	}
	if t.SystemDependencies.Primary == "" {
		v.add("system_dependencies.primary", "must not be empty (omit it for \"default\")")
	}
	for i, d := range t.DomainEvents {
		p := index("domain_events", i)
		if d.Name == "" {
			v.add(p+".name", "required")
		}
		v.schema(p+".schema", d.Schema, false)
	}
	if t.IdentityStrategy != "" && !slices.Contains(identityStrategies, string(t.IdentityStrategy)) {
		v.add("identity_strategy", "unknown identity strategy %q (want one of %s)", t.IdentityStrategy, strings.Join(identityStrategies, ", "))
	}
}

// schema checks that raw compiles as a JSON Schema (see ValidateContext); problems name the
// keyword inside it, such as input_schema.properties.n.minimum.
func (v *validator) schema(path string, raw json.RawMessage, required bool) {
	if isAbsent(raw) {
		if required {
			v.add(path, "required")
		}
		return
	}
	_, problems := compileSchema(raw)
	for _, p := range problems {
		v.add(under(path, p.Path), "%s", p.Message)
	}
}

func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func (v *validator) step(i int) {
	s := &v.t.Steps[i]
	p := index("steps", i)
	switch {
	case s.Name == "":
		v.add(p+".name", "required")
	default:
		v.maxLen(p+".name", s.Name, maxStepNameLen, "named_steps.name is varchar(128)")
		if first, dup := v.byName[s.Name]; dup {
			v.add(p+".name", "duplicate step name %q (also steps[%d])", s.Name, first)
		} else {
			v.byName[s.Name] = i
		}
	}
	switch {
	case s.Type == "":
		// the zero value is standard
	case !slices.Contains(stepTypes, string(s.Type)):
		v.add(p+".type", "unknown step type %q (want one of %s)", s.Type, strings.Join(stepTypes, ", "))
	}
	h := s.Handler
	switch {
	case h.Callable == "":
		v.add(p+".handler.callable", "required")
	default:
		v.maxLen(p+".handler.callable", h.Callable, maxCallableLen, "")
	}
	if h.Method != nil && *h.Method == "" {
		v.add(p+".handler.method", "must not be empty (omit it for \"call\")")
	}
	if h.Resolver != nil && *h.Resolver == "" {
		v.add(p+".handler.resolver", "must not be empty (omit it to use the resolver chain)")
	}
	v.retry(p+".retry", s.Retry)
	if s.TimeoutSeconds != nil && *s.TimeoutSeconds == 0 {
		v.add(p+".timeout_seconds", "must be greater than 0")
	}
	for j, e := range s.PublishesEvents {
		v.event(index(p+".publishes_events", j), e)
	}
	if s.BatchConfig != nil {
		v.batchConfig(p+".batch_config", s.BatchConfig)
	}
	v.schema(p+".result_schema", s.ResultSchema, false)
}

func (v *validator) retry(p string, r RetryConfiguration) {
	if r.MaxAttempts < 1 || r.MaxAttempts > maxAttemptsLimit {
		v.add(p+".max_attempts", "must be between 1 and %d", maxAttemptsLimit)
	}
	if r.Backoff != "" && !slices.Contains(backoffStrategies, string(r.Backoff)) {
		v.add(p+".backoff", "unknown backoff strategy %q (want one of %s)", r.Backoff, strings.Join(backoffStrategies, ", "))
	}
	check := func(field string, ms *uint64) {
		if ms != nil && (*ms == 0 || *ms > maxBackoffMs) {
			v.add(p+"."+field, "must be between 1 and %d", maxBackoffMs)
		}
	}
	check("backoff_base_ms", r.BackoffBaseMs)
	check("max_backoff_ms", r.MaxBackoffMs)
	if r.BackoffBaseMs != nil && r.MaxBackoffMs != nil && *r.BackoffBaseMs > *r.MaxBackoffMs {
		v.add(p+".backoff_base_ms", "must not exceed max_backoff_ms (%d)", *r.MaxBackoffMs)
	}
}

// event applies tasker-core's EventDeclaration rules (validate_name, validate_publisher) and
// requires the declaration's mandatory description and schema.
func (v *validator) event(p string, e EventDeclaration) {
	switch n := e.Name; {
	case n == "":
		v.add(p+".name", "required")
	case !strings.Contains(n, "."):
		v.add(p+".name", "event name %q must contain at least one dot (namespace.action)", n)
	case strings.HasPrefix(n, ".") || strings.HasSuffix(n, "."):
		v.add(p+".name", "event name %q must not start or end with a dot", n)
	case strings.Contains(n, ".."):
		v.add(p+".name", "event name %q must not contain consecutive dots", n)
	case !eventNamePattern.MatchString(n):
		v.add(p+".name", "event name %q must contain only lowercase letters, digits, underscores and dots", n)
	}
	if e.Description == "" {
		v.add(p+".description", "required")
	}
	if e.Condition != "" && !slices.Contains(publicationConditions, string(e.Condition)) {
		v.add(p+".condition", "unknown publication condition %q (want one of %s)", e.Condition, strings.Join(publicationConditions, ", "))
	}
	if e.DeliveryMode != "" && !slices.Contains(deliveryModes, string(e.DeliveryMode)) {
		v.add(p+".delivery_mode", "unknown delivery mode %q (want one of %s)", e.DeliveryMode, strings.Join(deliveryModes, ", "))
	}
	v.schema(p+".schema", e.Schema, true)
	if e.Publisher != nil && !publisherPattern.MatchString(*e.Publisher) {
		v.add(p+".publisher", "publisher %q must be an identifier such as PaymentEventPublisher, my_module::Publisher or package.Publisher", *e.Publisher)
	}
}

func (v *validator) batchConfig(p string, b *BatchConfiguration) {
	if b.BatchSize < 1 || b.BatchSize > maxBatchSize {
		v.add(p+".batch_size", "must be between 1 and %d", maxBatchSize)
	}
	if b.Parallelism < 1 || b.Parallelism > maxBatchParallelism {
		v.add(p+".parallelism", "must be between 1 and %d", maxBatchParallelism)
	}
	if b.CursorField == "" {
		v.add(p+".cursor_field", "required")
	} else {
		v.maxLen(p+".cursor_field", b.CursorField, 255, "")
	}
	if b.WorkerTemplate == "" {
		v.add(p+".worker_template", "required")
	}
	if b.FailureStrategy != "" && !slices.Contains(failureStrategies, string(b.FailureStrategy)) {
		v.add(p+".failure_strategy", "unknown failure strategy %q (want one of %s)", b.FailureStrategy, strings.Join(failureStrategies, ", "))
	}
}

func (v *validator) dependencies() {
	for i, s := range v.t.Steps {
		seen := map[string]bool{}
		for j, d := range s.Dependencies {
			p := index(index("steps", i)+".dependencies", j)
			switch _, ok := v.byName[d]; {
			case d == "":
				v.add(p, "must not be empty")
			case d == s.Name:
				v.add(p, "step %q depends on itself", d)
			case !ok:
				v.add(p, "unknown step %q", d)
			case seen[d]:
				v.add(p, "duplicate dependency %q", d)
			}
			seen[d] = true
		}
	}
}

// graph returns, per step index, the indexes of its (existing, non-self) dependencies.
func (v *validator) graph() [][]int {
	deps := make([][]int, len(v.t.Steps))
	for i, s := range v.t.Steps {
		for _, d := range s.Dependencies {
			if j, ok := v.byName[d]; ok && j != i && !slices.Contains(deps[i], j) {
				deps[i] = append(deps[i], j)
			}
		}
	}
	return deps
}

// cycles reports one concrete cycle per strongly connected component (Tarjan).
func (v *validator) cycles() {
	deps := v.graph()
	n := len(deps)
	idx := make([]int, n)
	low := make([]int, n)
	on := make([]bool, n)
	for i := range idx {
		idx[i] = -1
	}
	var stack []int
	counter := 0
	var sccs [][]int
	var strong func(u int)
	strong = func(u int) {
		idx[u], low[u] = counter, counter
		counter++
		stack = append(stack, u)
		on[u] = true
		for _, w := range deps[u] {
			if idx[w] < 0 {
				strong(w)
				low[u] = min(low[u], low[w])
			} else if on[w] {
				low[u] = min(low[u], idx[w])
			}
		}
		if low[u] == idx[u] {
			var comp []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				on[w] = false
				comp = append(comp, w)
				if w == u {
					break
				}
			}
			if len(comp) > 1 {
				sccs = append(sccs, comp)
			}
		}
	}
	for u := range n {
		if idx[u] < 0 {
			strong(u)
		}
	}
	sort.Slice(sccs, func(a, b int) bool { return slices.Min(sccs[a]) < slices.Min(sccs[b]) })
	for _, comp := range sccs {
		start := slices.Min(comp)
		path := cycleThrough(start, comp, deps)
		names := make([]string, len(path))
		for k, s := range path {
			names[k] = v.t.Steps[s].Name
		}
		v.add(index("steps", start)+".dependencies", "dependency cycle: %s (each step depends on the next)", strings.Join(names, " -> "))
	}
}

// cycleThrough finds a shortest path start -> ... -> start inside comp (BFS).
func cycleThrough(start int, comp []int, deps [][]int) []int {
	in := map[int]bool{}
	for _, c := range comp {
		in[c] = true
	}
	prev := map[int]int{}
	queue := []int{start}
	visited := map[int]bool{start: true}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, w := range deps[u] {
			if !in[w] {
				continue
			}
			if w == start {
				path := []int{start}
				for x := u; x != start; x = prev[x] {
					path = append(path, x)
				}
				slices.Reverse(path[1:])
				return append(path, start)
			}
			if !visited[w] {
				visited[w] = true
				prev[w] = u
				queue = append(queue, w)
			}
		}
	}
	return []int{start, start}
}

// decisionDescendants marks every step that transitively depends on a decision step: those
// are created by the orchestrator when the decision runs, not at task creation.
func (v *validator) decisionDescendants(deps [][]int) []bool {
	n := len(deps)
	dependents := make([][]int, n)
	for i, ds := range deps {
		for _, d := range ds {
			dependents[d] = append(dependents[d], i)
		}
	}
	out := make([]bool, n)
	var queue []int
	for i, s := range v.t.Steps {
		if s.Type == StepDecision {
			queue = append(queue, dependents[i]...)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if out[u] {
			continue
		}
		out[u] = true
		queue = append(queue, dependents[u]...)
	}
	return out
}

// stepTypes checks the shapes the orchestrator needs for decision points, batches and
// deferred convergence (orchestration.md §5.6, §5.7).
func (v *validator) stepTypes() {
	steps := v.t.Steps
	deps := v.graph()
	desc := v.decisionDescendants(deps)
	dependents := make([][]int, len(steps))
	for i, ds := range deps {
		for _, d := range ds {
			dependents[d] = append(dependents[d], i)
		}
	}
	for i, s := range steps {
		p := index("steps", i)
		switch s.Type {
		case StepDecision:
			if len(s.Dependencies) == 0 {
				v.add(p+".dependencies", "decision step %q must have at least one dependency", s.Name)
			}
			if len(dependents[i]) == 0 {
				v.add(p+".type", "decision step %q has no dependent steps, so it has nothing to create", s.Name)
			}
		case StepBatchable:
			var workers []string
			for _, d := range dependents[i] {
				if steps[d].Type == StepBatchWorker {
					workers = append(workers, steps[d].Name)
				}
			}
			if len(workers) == 0 {
				v.add(p+".type", "batchable step %q needs a batch_worker step that depends on it", s.Name)
			}
			if raw, ok := s.Handler.Initialization["worker_template_name"]; ok {
				var name string
				if json.Unmarshal(raw, &name) != nil {
					v.add(p+".handler.initialization.worker_template_name", "must be a string")
				} else if len(workers) > 0 && !slices.Contains(workers, name) {
					v.add(p+".handler.initialization.worker_template_name", "%q is not a batch_worker step depending on %q (want one of %s)", name, s.Name, strings.Join(workers, ", "))
				}
			}
			if b := s.BatchConfig; b != nil && b.WorkerTemplate != "" && len(workers) > 0 && !slices.Contains(workers, b.WorkerTemplate) {
				v.add(p+".batch_config.worker_template", "%q is not a batch_worker step depending on %q (want one of %s)", b.WorkerTemplate, s.Name, strings.Join(workers, ", "))
			}
		case StepBatchWorker:
			if s.BatchConfig == nil {
				v.add(p+".batch_config", "required for batch_worker steps (the orchestrator reads it when it creates workers)")
			} else if s.BatchConfig.WorkerTemplate != "" && s.BatchConfig.WorkerTemplate != s.Name {
				v.add(p+".batch_config.worker_template", "must be %q, the name of this batch_worker step", s.Name)
			}
			if !slices.ContainsFunc(deps[i], func(d int) bool { return steps[d].Type == StepBatchable }) {
				v.add(p+".dependencies", "batch_worker step %q must depend on the batchable step that creates its workers", s.Name)
			}
		case StepDeferredConvergence:
			ok := slices.ContainsFunc(deps[i], func(d int) bool { return steps[d].Type == StepBatchWorker || desc[d] })
			if !ok {
				v.add(p+".dependencies", "deferred_convergence step %q must depend on a batch_worker step or on steps created by a decision point; otherwise it is never created", s.Name)
			}
		}
		if s.BatchConfig != nil && s.Type != StepBatchWorker && s.Type != StepBatchable {
			v.add(p+".batch_config", "only batch_worker steps use batch_config (this step is %s)", typeName(s.Type))
		}
		if s.Type != StepDeferredConvergence {
			for j, d := range s.Dependencies {
				if k, ok := v.byName[d]; ok && steps[k].Type == StepBatchWorker {
					v.add(index(p+".dependencies", j), "only deferred_convergence steps may depend on batch_worker step %q", d)
				}
			}
		}
	}
}

func typeName(t StepType) string {
	if t == "" {
		return string(StepStandard)
	}
	return string(t)
}

func (v *validator) environments() {
	envs := make([]string, 0, len(v.t.Environments))
	for e := range v.t.Environments {
		envs = append(envs, e)
	}
	sort.Strings(envs)
	for _, e := range envs {
		for i, o := range v.t.Environments[e].Steps {
			p := index("environments."+e+".steps", i)
			if o.Name == "" {
				v.add(p+".name", "required")
			} else if _, ok := v.byName[o.Name]; !ok && o.Name != "ALL" {
				v.add(p+".name", "no step named %q (use \"ALL\" for every step)", o.Name)
			}
			if o.TimeoutSeconds != nil && *o.TimeoutSeconds == 0 {
				v.add(p+".timeout_seconds", "must be greater than 0")
			}
			if o.Retry != nil {
				v.retry(p+".retry", *o.Retry)
			}
		}
	}
}

func (v *validator) lifecycle() {
	l := v.t.Lifecycle
	if l == nil {
		return
	}
	check := func(field string, val *int32, hi int32) {
		if val != nil && (*val < 1 || *val > hi) {
			v.add("lifecycle."+field, "must be between 1 and %d", hi)
		}
	}
	check("max_duration_minutes", l.MaxDurationMinutes, 43200)
	check("max_waiting_for_dependencies_minutes", l.MaxWaitingForDependenciesMinutes, 10080)
	check("max_waiting_for_retry_minutes", l.MaxWaitingForRetryMinutes, 10080)
	check("max_steps_in_process_minutes", l.MaxStepsInProcessMinutes, 10080)
	switch l.StalenessAction {
	case "", "dlq", "error", "none":
	default:
		v.add("lifecycle.staleness_action", "unknown staleness action %q (want one of dlq, error, none)", l.StalenessAction)
	}
}
