package handlers

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type typedOrder struct {
	Amount   int64 `json:"amount"`
	Customer struct {
		ID int `json:"id"`
	} `json:"customer"`
}

func (o typedOrder) Validate() error {
	if o.Amount <= 0 {
		return errors.New("amount must be positive")
	}
	return nil
}

type typedInputs struct {
	BatchSize int `json:"batch_size"`
}

func (b *typedInputs) Validate() error {
	if b.BatchSize == 0 {
		return PermanentError("batch_size is required").WithCode("MISSING_BATCH_SIZE")
	}
	return nil
}

func TestTypedDecodesContext(t *testing.T) {
	h := Typed(func(ctx context.Context, step *StepContext, in typedOrder) (any, error) {
		return map[string]any{"amount": in.Amount * 2, "customer": in.Customer.ID}, nil
	})
	r := Run(context.Background(), h, newStep(withTaskContext(`{"amount":21,"customer":{"id":7},"extra":true}`)))
	assertJSONEqual(t, outputJSON(t, r), []byte(`{"amount":42,"customer":7}`))
}

func TestTypedDecodeFailureNamesField(t *testing.T) {
	called := false
	h := Typed(func(ctx context.Context, step *StepContext, in typedOrder) (any, error) {
		called = true
		return nil, nil
	})
	for _, tc := range []struct {
		ctx, field, code string
	}{
		{`{"amount":"21"}`, "amount", "INVALID_CONTEXT_FIELD"},
		{`{"amount":5,"customer":{"id":"x"}}`, "customer.id", "INVALID_CONTEXT_FIELD"},
		{`[1,2]`, "", "INVALID_CONTEXT"},
		{`{"amount":0}`, "", "INVALID_CONTEXT"}, // Validate
	} {
		r := Run(context.Background(), h, newStep(withTaskContext(tc.ctx)))
		if !r.IsFailure() || r.Retryable() || r.Error.ErrorType != ErrorTypeValidation || r.Error.Code != tc.code {
			t.Fatalf("%s: got %+v %+v, want non-retryable %s %s", tc.ctx, r, r.Error, ErrorTypeValidation, tc.code)
		}
		if tc.field != "" && (r.Error.Context["field"] != tc.field || !strings.Contains(r.Error.Message, `"`+tc.field+`"`)) {
			t.Errorf("%s: message %q context %v must name %q", tc.ctx, r.Error.Message, r.Error.Context, tc.field)
		}
	}
	if called {
		t.Fatal("handler called with an undecodable context")
	}
}

func TestTypedWithInputs(t *testing.T) {
	h := TypedWithInputs(func(ctx context.Context, step *StepContext, in typedOrder, inputs typedInputs) (any, error) {
		return in.Amount * int64(inputs.BatchSize), nil
	})
	ok := Run(context.Background(), h, newStep(withTaskContext(`{"amount":3}`), withInputs(`{"batch_size":100}`)))
	assertJSONEqual(t, outputJSON(t, ok), []byte(`300`))

	bad := Run(context.Background(), h, newStep(withTaskContext(`{"amount":3}`), withInputs(`{"batch_size":"big"}`)))
	if !bad.IsFailure() || bad.Retryable() || bad.Error.ErrorType != ErrorTypePermanent ||
		bad.Error.Code != "INVALID_STEP_INPUTS" || bad.Error.Context["field"] != "batch_size" {
		t.Fatalf("mistyped inputs: %+v", bad.Error)
	}
	// A *StepError from Validate keeps its own classification.
	missing := Run(context.Background(), h, newStep(withTaskContext(`{"amount":3}`), withInputs(`{}`)))
	if !missing.IsFailure() || missing.Error.Code != "MISSING_BATCH_SIZE" {
		t.Fatalf("validate: %+v", missing.Error)
	}
	// The context is checked first.
	ctxBad := Run(context.Background(), h, newStep(withTaskContext(`{"amount":-1}`), withInputs(`{"batch_size":1}`)))
	if !ctxBad.IsFailure() || ctxBad.Error.ErrorType != ErrorTypeValidation {
		t.Fatalf("context validate: %+v", ctxBad.Error)
	}
}

func TestTypedPassesResultsThrough(t *testing.T) {
	h := Typed(func(ctx context.Context, step *StepContext, in map[string]any) (any, error) {
		return nil, RetryableError("upstream down").WithCode("UPSTREAM")
	})
	r := Run(context.Background(), h, newStep())
	if !r.Retryable() || r.Error.Code != "UPSTREAM" {
		t.Fatalf("got %+v", r.Error)
	}
}
