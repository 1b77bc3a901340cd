package handlers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/protocol"
)

// named returns a handler whose output is its label, to see which one was resolved.
func named(label string) HandlerFunc {
	return func(context.Context, *StepContext) Result { return Success(label, nil) }
}

func labelOf(t *testing.T, h Handler) string {
	t.Helper()
	r := h.Call(context.Background(), newStep())
	s, _ := r.Value.(string)
	return s
}

func TestRegisterErrors(t *testing.T) {
	r := NewRegistry()
	if err := r.Register("a", named("a")); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("a", named("a2")); !errors.Is(err, ErrDuplicateHandler) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := r.Register("  ", named("x")); !errors.Is(err, ErrEmptyName) {
		t.Fatalf("empty: %v", err)
	}
	if err := r.Register("n", nil); !errors.Is(err, ErrNilHandler) {
		t.Fatalf("nil: %v", err)
	}
	if err := r.RegisterFunc("b", named("b")); err != nil {
		t.Fatal(err)
	}
	if !r.IsRegistered("a") || r.IsRegistered("zz") || r.Len() != 2 || strings.Join(r.List(), ",") != "a,b" {
		t.Fatalf("state: %v", r.List())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MustRegister must panic on duplicates")
		}
	}()
	r.MustRegister("a", named("again"))
}

func TestResolveChain(t *testing.T) {
	r := NewRegistry()
	r.MustRegister("validate_order", named("explicit"))
	prefix := ResolverFunc(func(def protocol.HandlerDefinition) (Handler, bool) {
		if rest, ok := strings.CutPrefix(def.Callable, "payments:"); ok {
			return named("prefix:" + rest), true
		}
		return nil, false
	})
	catchAll := ResolverFunc(func(def protocol.HandlerDefinition) (Handler, bool) { return named("catch-all:" + def.Callable), true })
	if err := r.AddResolver("catch_all", 200, catchAll); err != nil {
		t.Fatal(err)
	}
	if err := r.AddResolver("payments", DefaultResolverPriority, prefix); err != nil {
		t.Fatal(err)
	}
	if err := r.AddResolver("payments", 1, prefix); !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("duplicate resolver name: %v", err)
	}
	if err := r.AddResolver(ExplicitMappingResolver, 1, prefix); !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("built-in name reuse: %v", err)
	}
	if got := strings.Join(r.ResolverNames(), ","); got != "explicit_mapping,payments,catch_all" {
		t.Fatalf("chain order: %s", got)
	}

	tests := []struct {
		name string
		def  protocol.HandlerDefinition
		want string
		err  string
	}{
		{"explicit first", protocol.HandlerDefinition{Callable: "validate_order"}, "explicit", ""},
		{"resolver by priority", protocol.HandlerDefinition{Callable: "payments:refund"}, "prefix:refund", ""},
		{"last resolver", protocol.HandlerDefinition{Callable: "anything"}, "catch-all:anything", ""},
		{"hint explicit", protocol.HandlerDefinition{Callable: "validate_order", Resolver: ExplicitMappingResolver}, "explicit", ""},
		{"hint explicit miss", protocol.HandlerDefinition{Callable: "payments:refund", Resolver: ExplicitMappingResolver}, "",
			`Handler not found: payments:refund (resolver "explicit_mapping" could not resolve it)`},
		{"hint bypasses priority", protocol.HandlerDefinition{Callable: "validate_order", Resolver: "catch_all"}, "catch-all:validate_order", ""},
		{"unknown hint", protocol.HandlerDefinition{Callable: "validate_order", Resolver: "class_constant"}, "",
			`Handler not found: validate_order (resolver "class_constant" not found in chain)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := r.Resolve(tc.def)
			if tc.err != "" {
				var nf *NotFoundError
				if !errors.As(err, &nf) || err.Error() != tc.err || !errors.Is(err, ErrHandlerNotFound) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := labelOf(t, h); got != tc.want {
				t.Fatalf("resolved %q, want %q", got, tc.want)
			}
		})
	}

	// A resolver with a lower priority than the explicit mapping runs before it (as in tasker-core).
	r2 := NewRegistry()
	r2.MustRegister("x", named("explicit"))
	_ = r2.AddResolver("early", 1, ResolverFunc(func(protocol.HandlerDefinition) (Handler, bool) { return named("early"), true }))
	if h, _ := r2.Resolve(protocol.HandlerDefinition{Callable: "x"}); labelOf(t, h) != "early" {
		t.Fatal("priority 1 must run before explicit mapping (10)")
	}
	if _, err := NewRegistry().Resolve(protocol.HandlerDefinition{Callable: "ghost"}); err == nil || err.Error() != "Handler not found: ghost" {
		t.Fatalf("empty registry: %v", err)
	}
}

// multi mimics tasker-core's resolver_tests_multi_method handler.
type multi struct{}

func (multi) Call(context.Context, *StepContext) Result { return Success("call", nil) }
func (multi) Methods() map[string]HandlerFunc {
	return map[string]HandlerFunc{"validate": named("validate"), "process": named("process")}
}

// selfDispatch reads the method itself, like the Rust example handler.
type selfDispatch struct{}

func (selfDispatch) Call(_ context.Context, s *StepContext) Result {
	return Success("self:"+s.Method(), nil)
}

func TestMethodDispatch(t *testing.T) {
	r := NewRegistry()
	r.MustRegister("resolver_tests_multi_method", multi{})
	r.MustRegister("resolver_tests_multi_method#refund", named("registered-refund"))
	r.MustRegister("self", selfDispatch{})
	r.MustRegister("methodset", MethodSet{"call": named("ms-call"), "execute_action": named("ms-exec")})

	tests := []struct {
		def  protocol.HandlerDefinition
		want string
		err  string
	}{
		{protocol.HandlerDefinition{Callable: "resolver_tests_multi_method", Method: "validate"}, "validate", ""},
		{protocol.HandlerDefinition{Callable: "resolver_tests_multi_method", Method: "process"}, "process", ""},
		{protocol.HandlerDefinition{Callable: "resolver_tests_multi_method", Method: "refund"}, "registered-refund", ""},
		{protocol.HandlerDefinition{Callable: "resolver_tests_multi_method"}, "call", ""},
		{protocol.HandlerDefinition{Callable: "resolver_tests_multi_method", Method: "call"}, "call", ""},
		{protocol.HandlerDefinition{Callable: "resolver_tests_multi_method", Method: "nope"}, "", "Handler method not found: resolver_tests_multi_method#nope"},
		{protocol.HandlerDefinition{Callable: "methodset", Method: "execute_action", Resolver: ExplicitMappingResolver}, "ms-exec", ""},
		{protocol.HandlerDefinition{Callable: "self", Method: "anything"}, "self:call", ""}, // step built by newStep has method call
	}
	for _, tc := range tests {
		h, err := r.Resolve(tc.def)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%+v: err = %v", tc.def, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.def, err)
			continue
		}
		if got := labelOf(t, h); got != tc.want {
			t.Errorf("%+v: resolved %q, want %q", tc.def, got, tc.want)
		}
	}

	// The self-dispatching handler sees the definition's method through the StepContext.
	def := protocol.HandlerDefinition{Callable: "self", Method: "refund"}
	h, _ := r.Resolve(def)
	res := h.Call(context.Background(), newStep(withHandler(def)))
	if res.Value != "self:refund" {
		t.Fatalf("self dispatch: %v", res.Value)
	}
}

func TestResolveWithFallback(t *testing.T) {
	r := NewRegistry()
	r.MustRegister("linear_step_1", named("by-step-name"))
	def := protocol.HandlerDefinition{Callable: "tasker_example_rs::step_handlers::linear_workflow::LinearStep1Handler"}
	h, err := r.ResolveWithFallback(def, "linear_step_1")
	if err != nil || labelOf(t, h) != "by-step-name" {
		t.Fatalf("fallback: %v", err)
	}
	_, err = r.ResolveWithFallback(def, "", "other")
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Callable != def.Callable {
		t.Fatalf("fallback miss must report the original callable: %v", err)
	}
}
