package handlers

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/tasker-go/tasker/protocol"
)

// Registration errors.
var (
	ErrEmptyName        = errors.New("handlers: empty handler name")
	ErrNilHandler       = errors.New("handlers: nil handler")
	ErrDuplicateHandler = errors.New("handlers: handler already registered")
	ErrDuplicateName    = errors.New("handlers: resolver name already used")
)

// ErrHandlerNotFound is wrapped by every *NotFoundError.
var ErrHandlerNotFound = errors.New("handler not found")

// NotFoundError reports a handler definition no resolver could satisfy. The worker reports it
// as a non-retryable handler_not_found failure (ErrorResult does this).
type NotFoundError struct {
	Callable string
	Method   string // set when the handler exists but lacks this method
	Reason   string // optional detail, e.g. an unknown resolver hint
}

// Error is "Handler not found: <callable>" (tasker-core's text) or, for a missing method,
// "Handler method not found: <callable>#<method>".
func (e *NotFoundError) Error() string {
	msg := "Handler not found: " + e.Callable
	if e.Method != "" {
		msg = "Handler method not found: " + e.Callable + "#" + e.Method
	}
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// Unwrap returns ErrHandlerNotFound.
func (e *NotFoundError) Unwrap() error { return ErrHandlerNotFound }

// Resolver is one link of a Registry's resolver chain: it maps a handler definition to a
// handler, e.g. by callable prefix or a naming scheme, and reports false when it has none.
// (Registry.Resolve, which walks the chain, returns an error instead.)
type Resolver interface {
	Lookup(def protocol.HandlerDefinition) (Handler, bool)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(def protocol.HandlerDefinition) (Handler, bool)

// Lookup calls f.
func (f ResolverFunc) Lookup(def protocol.HandlerDefinition) (Handler, bool) { return f(def) }

// ExplicitMappingResolver is the name of the built-in resolver over registered names; a step's
// handler.resolver may name it (or a resolver added with AddResolver) to bypass the chain.
const ExplicitMappingResolver = "explicit_mapping"

// ExplicitMappingPriority is the built-in resolver's place in the chain (tasker-core's value).
// Resolvers are tried by ascending priority; DefaultResolverPriority places user resolvers
// after it.
const (
	ExplicitMappingPriority = 10
	DefaultResolverPriority = 100
)

// MethodSeparator joins a callable and a method in a registered name ("callable#method").
const MethodSeparator = "#"

type resolverEntry struct {
	name     string
	priority int
	seq      int
	resolver Resolver
}

// Registry maps handler definitions to handlers: registered names first (explicit mapping,
// including "callable#method" names), then user resolvers by priority, then method dispatch.
// The zero value is not usable; use NewRegistry. All methods are safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	handlers  map[string]Handler
	resolvers []resolverEntry
	byName    map[string]Resolver
	nextSeq   int
}

// NewRegistry returns an empty registry whose chain holds the explicit mapping resolver.
func NewRegistry() *Registry {
	r := &Registry{handlers: map[string]Handler{}, byName: map[string]Resolver{}}
	explicit := ResolverFunc(r.resolveExplicit)
	r.resolvers = []resolverEntry{{name: ExplicitMappingResolver, priority: ExplicitMappingPriority, resolver: explicit}}
	r.byName[ExplicitMappingResolver] = explicit
	r.nextSeq = 1
	return r
}

// Register maps name (usually a handler.callable, or "callable#method") to h. It fails for an
// empty name, a nil handler, or a name already registered.
func (r *Registry) Register(name string, h Handler) error {
	if strings.TrimSpace(name) == "" {
		return ErrEmptyName
	}
	if h == nil {
		return fmt.Errorf("%w for %q", ErrNilHandler, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateHandler, name)
	}
	r.handlers[name] = h
	return nil
}

// RegisterFunc registers a HandlerFunc.
func (r *Registry) RegisterFunc(name string, f HandlerFunc) error { return r.Register(name, f) }

// MustRegister is Register that panics on error.
func (r *Registry) MustRegister(name string, h Handler) {
	if err := r.Register(name, h); err != nil {
		panic(err)
	}
}

// IsRegistered reports whether name is registered.
func (r *Registry) IsRegistered(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.handlers[name]
	return ok
}

// List returns the registered names, sorted.
func (r *Registry) List() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.handlers))
}

// Len returns the number of registered names.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.handlers)
}

// AddResolver appends a named resolver to the chain. Lower priorities run first; equal
// priorities run in the order added. The name can be used as a handler.resolver hint.
func (r *Registry) AddResolver(name string, priority int, res Resolver) error {
	if strings.TrimSpace(name) == "" {
		return ErrEmptyName
	}
	if res == nil {
		return fmt.Errorf("%w: resolver %q", ErrNilHandler, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byName[name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateName, name)
	}
	r.byName[name] = res
	r.resolvers = append(r.resolvers, resolverEntry{name: name, priority: priority, seq: r.nextSeq, resolver: res})
	r.nextSeq++
	sort.SliceStable(r.resolvers, func(i, j int) bool {
		if r.resolvers[i].priority != r.resolvers[j].priority {
			return r.resolvers[i].priority < r.resolvers[j].priority
		}
		return r.resolvers[i].seq < r.resolvers[j].seq
	})
	return nil
}

// ResolverNames lists the chain in the order it is tried.
func (r *Registry) ResolverNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, len(r.resolvers))
	for i, e := range r.resolvers {
		names[i] = e.name
	}
	return names
}

// methodBound marks a handler registered under "callable#method", so no further dispatch applies.
type methodBound struct{ Handler }

func (r *Registry) resolveExplicit(def protocol.HandlerDefinition) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if def.UsesMethodDispatch() {
		if h, ok := r.handlers[def.Callable+MethodSeparator+def.Method]; ok {
			return methodBound{h}, true
		}
	}
	h, ok := r.handlers[def.Callable]
	return h, ok
}

// Resolve finds the handler for a step's handler definition:
//  1. with a handler.resolver hint, only that resolver is asked ("explicit_mapping" or a name
//     given to AddResolver); an unknown hint fails;
//  2. otherwise the chain is tried by ascending priority (registered names at priority 10);
//  3. when handler.method is set and is not "call", a name registered as "callable#method" wins;
//     else a MethodHandler's Methods()[method] is used (missing → NotFoundError with Method set);
//     any other handler is returned as is and may dispatch on StepContext.Method itself.
//
// Failures are *NotFoundError.
func (r *Registry) Resolve(def protocol.HandlerDefinition) (Handler, error) {
	h, err := r.find(def)
	if err != nil {
		return nil, err
	}
	if bound, ok := h.(methodBound); ok {
		return bound.Handler, nil
	}
	if !def.UsesMethodDispatch() {
		return h, nil
	}
	if mh, ok := h.(MethodHandler); ok {
		f, ok := mh.Methods()[def.Method]
		if !ok || f == nil {
			return nil, &NotFoundError{Callable: def.Callable, Method: def.Method}
		}
		return f, nil
	}
	return h, nil
}

// ResolveWithFallback is Resolve, then, if nothing matched, Resolve with each fallback name as
// the callable (tasker-core's Rust worker falls back to the template step name). The first
// not-found error is returned when every name fails.
func (r *Registry) ResolveWithFallback(def protocol.HandlerDefinition, fallbacks ...string) (Handler, error) {
	h, err := r.Resolve(def)
	if err == nil || !errors.Is(err, ErrHandlerNotFound) {
		return h, err
	}
	for _, name := range fallbacks {
		if name == "" || name == def.Callable {
			continue
		}
		alt := def
		alt.Callable = name
		if h, ferr := r.Resolve(alt); ferr == nil {
			return h, nil
		}
	}
	return nil, err
}

// find asks the hinted resolver, or the chain in order, for def's handler.
func (r *Registry) find(def protocol.HandlerDefinition) (Handler, error) {
	r.mu.RLock()
	chain := slices.Clone(r.resolvers)
	hinted, hintOK := r.byName[def.Resolver]
	r.mu.RUnlock()

	if def.Resolver != "" {
		if !hintOK {
			return nil, &NotFoundError{Callable: def.Callable, Reason: fmt.Sprintf("resolver %q not found in chain", def.Resolver)}
		}
		if h, ok := hinted.Lookup(def); ok && h != nil {
			return h, nil
		}
		return nil, &NotFoundError{Callable: def.Callable, Reason: fmt.Sprintf("resolver %q could not resolve it", def.Resolver)}
	}
	for _, e := range chain {
		if h, ok := e.resolver.Lookup(def); ok && h != nil {
			return h, nil
		}
	}
	return nil, &NotFoundError{Callable: def.Callable}
}
