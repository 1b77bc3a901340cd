package handlers

import (
	"context"
	"errors"
)

// Validator may be implemented by the input types of Typed and TypedWithInputs (value or
// pointer receiver). Validate runs after decoding; an error that is not a *StepError fails the
// step as a non-retryable validation_error (permanent_error for step inputs).
type Validator interface {
	Validate() error
}

// Typed adapts a function of the task context decoded into C (see DecodeContext) to Handler.
// A context that does not decode, or whose Validate fails, is a non-retryable validation_error
// naming the field (code INVALID_CONTEXT_FIELD, context "field"); f is not called then. f's
// results are handled as by Func.
func Typed[C any](f func(ctx context.Context, step *StepContext, in C) (any, error)) Handler {
	return Func(func(ctx context.Context, step *StepContext) (any, error) {
		in, err := typedContext[C](step)
		if err != nil {
			return nil, err
		}
		return f(ctx, step, in)
	})
}

// TypedWithInputs is Typed that also decodes the step inputs (workflow_steps.inputs: the
// template's handler.initialization, or a batch worker's cursor) into I, with DecodeStepInputs'
// conventions: a mismatch or a failed Validate is a permanent_error coded INVALID_STEP_INPUTS.
func TypedWithInputs[C, I any](f func(ctx context.Context, step *StepContext, in C, inputs I) (any, error)) Handler {
	return Func(func(ctx context.Context, step *StepContext) (any, error) {
		in, err := typedContext[C](step)
		if err != nil {
			return nil, err
		}
		inputs, err := DecodeStepInputs[I](step)
		if err != nil {
			return nil, err
		}
		if err := validate(&inputs, PermanentError, "step inputs", "INVALID_STEP_INPUTS"); err != nil {
			return nil, err
		}
		return f(ctx, step, in, inputs)
	})
}

func typedContext[C any](step *StepContext) (C, error) {
	in, err := DecodeContext[C](step)
	if err != nil {
		return in, err
	}
	return in, validate(&in, ValidationError, "task context", "INVALID_CONTEXT")
}

// validate runs the Validate of *v (or of v, for a pointer type T), if it has one; a plain error
// becomes kind("invalid <what>: …") with code.
func validate[T any](v *T, kind func(string) *StepError, what, code string) error {
	val, ok := any(v).(Validator)
	if !ok {
		if val, ok = any(*v).(Validator); !ok {
			return nil
		}
	}
	err := val.Validate()
	if err == nil {
		return nil
	}
	var se *StepError
	if errors.As(err, &se) {
		return err
	}
	return kind("invalid " + what).WithCode(code).Wrap(err)
}
