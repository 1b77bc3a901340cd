package handlers

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
)

// Handler executes one step. It must honour ctx (the worker cancels it on timeout or shutdown)
// and report every outcome through the returned Result.
type Handler interface {
	Call(ctx context.Context, step *StepContext) Result
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, step *StepContext) Result

// Call calls f.
func (f HandlerFunc) Call(ctx context.Context, step *StepContext) Result { return f(ctx, step) }

// Func adapts an error-returning function to Handler. A non-nil error becomes ErrorResult(err)
// (classified by Classify); otherwise the value is the step output, unless it already is a Result.
func Func(f func(ctx context.Context, step *StepContext) (any, error)) Handler {
	return HandlerFunc(func(ctx context.Context, step *StepContext) Result {
		v, err := f(ctx, step)
		if err != nil {
			return ErrorResult(err)
		}
		switch r := v.(type) {
		case Result:
			return r
		case *Result:
			if r != nil {
				return *r
			}
		}
		return Success(v, nil)
	})
}

// MethodHandler is a handler with several entry points, selected by the step definition's
// handler.method (tasker-core's method dispatch). The registry resolves a definition with a
// method other than "call" to Methods()[method].
type MethodHandler interface {
	Handler
	Methods() map[string]HandlerFunc
}

// MethodSet is a MethodHandler built from a map; Call runs the "call" entry.
type MethodSet map[string]HandlerFunc

// Call runs the "call" entry, or fails with handler_not_found when there is none.
func (m MethodSet) Call(ctx context.Context, step *StepContext) Result {
	if f, ok := m["call"]; ok {
		return f(ctx, step)
	}
	return ErrorResult(&NotFoundError{Callable: step.Callable(), Method: "call"})
}

// Methods returns m.
func (m MethodSet) Methods() map[string]HandlerFunc { return m }

// maxBacktraceLines bounds the stack stored in error.backtrace for a panic.
const maxBacktraceLines = 64

// Run calls h and turns a panic into a non-retryable handler_panic failure
// ("Handler panicked: <value>", with handler_name, task_uuid and the stack), as tasker-core does.
// A nil h fails with handler_not_found.
func Run(ctx context.Context, h Handler, step *StepContext) (res Result) {
	if h == nil {
		return ErrorResult(&NotFoundError{Callable: step.Callable()})
	}
	defer func() {
		if v := recover(); v != nil {
			stack := strings.Split(strings.TrimSpace(string(debug.Stack())), "\n")
			if len(stack) > maxBacktraceLines {
				stack = stack[:maxBacktraceLines]
			}
			res = Failure(fmt.Sprintf("Handler panicked: %v", v), ErrorTypeHandlerPanic, false,
				WithContext(step.failureContext()), WithBacktrace(stack))
			step.Logger().Error("handler panicked", "panic", fmt.Sprint(v))
		}
	}()
	return h.Call(ctx, step)
}
