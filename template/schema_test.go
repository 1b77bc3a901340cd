package template

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const orderSchemaTemplate = `
name: order
namespace_name: ns
version: '1'
input_schema:
  type: object
  required: [customer, items]
  additionalProperties: false
  properties:
    customer:
      type: object
      required: [id, email]
      properties:
        id: {type: integer, minimum: 1}
        email: {type: string, format: email, maxLength: 20}
    items:
      type: array
      minItems: 1
      items:
        type: object
        required: [sku, quantity]
        properties:
          sku: {type: string, pattern: '^[A-Z]+-[0-9]{3}$'}
          quantity: {type: integer, minimum: 1, maximum: 10}
          price: {type: number, exclusiveMinimum: 0}
    method: {type: string, enum: [standard, express]}
    note: {type: [string, "null"], minLength: 2}
    order_id: {type: string, format: uuid}
    exact: {const: 3}
steps:
  - {name: a, handler: {callable: x}}
`

func TestValidateContext(t *testing.T) {
	tt := mustParse(t, orderSchemaTemplate)
	if err := tt.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	cases := []struct {
		name    string
		context string
		want    []string
	}{
		{"valid", `{"customer":{"id":7,"email":"a@b.co"},"items":[{"sku":"WID-001","quantity":2,"price":1.5}],"method":"express","note":null,"order_id":"0190b8e2-7c1d-7000-8000-000000000001","exact":3.0}`, nil},
		{"integer given as 2.0 is an integer", `{"customer":{"id":7.0,"email":"a@b.co"},"items":[{"sku":"WID-001","quantity":2.0}]}`, nil},
		{"missing required", `{"customer":{"id":7}}`, []string{"items: required", "customer.email: required"}},
		{"wrong types", `{"customer":{"id":"7","email":5},"items":{}}`,
			[]string{"customer.email: must be of type string (got integer)", "customer.id: must be of type integer (got string)", "items: must be of type array (got object)"}},
		{"bounds and formats", `{"customer":{"id":0,"email":"not-an-email-address-long"},"items":[{"sku":"wid-1","quantity":11,"price":0}],"method":"slow","note":"x","order_id":"nope","exact":4}`,
			[]string{
				"customer.email: must be at most 20 characters",
				"customer.email: must be an email address",
				"customer.id: must be >= 1 (got 0)",
				"exact: must be 3",
				`items[0].price: must be > 0 (got 0)`,
				"items[0].quantity: must be <= 10 (got 11)",
				`items[0].sku: must match pattern "^[A-Z]+-[0-9]{3}$"`,
				`method: must be one of "standard", "express" (got "slow")`,
				"note: must be at least 2 characters",
				"order_id: must be a UUID",
			}},
		{"non-integer", `{"customer":{"id":1.5,"email":"a@b.co"},"items":[]}`,
			[]string{"customer.id: must be of type integer (got number)", "items: must have at least 1 items"}},
		{"additional property", `{"customer":{"id":1,"email":"a@b.co"},"items":[{"sku":"AB-123","quantity":1}],"onboarding":true}`,
			[]string{"onboarding: unexpected property (additionalProperties is false)"}},
		{"not an object", `[1]`, []string{"(context): must be of type object (got array)"}},
		{"empty context is null", ``, []string{"(context): must be of type object (got null)"}},
		{"invalid JSON", `{"a":`, []string{"(context): invalid JSON: unexpected EOF"}},
		{"huge exponent does not hang", `{"customer":{"id":1e999999999,"email":"a@b.co"},"items":[{"sku":"AB-123","quantity":-1e-999999999}]}`,
			[]string{"items[0].quantity: must be >= 1 (got -1e-999999999)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateContext(tt, []byte(tc.context))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *ContextError
			if !errors.As(err, &ce) {
				t.Fatalf("want *ContextError, got %T %v", err, err)
			}
			if ce.Template != "ns/order/1" {
				t.Errorf("Template = %q", ce.Template)
			}
			got := make([]string, len(ce.Problems))
			for i, p := range ce.Problems {
				got[i] = p.String()
				if p.Path == "" {
					got[i] = "(context): " + p.Message
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems\n got: %q\nwant: %q", got, tc.want)
			}
			if !strings.Contains(err.Error(), "ns/order/1") {
				t.Errorf("message does not name the template: %v", err)
			}
		})
	}
}

func TestValidateContextWithoutSchemaAcceptsAnything(t *testing.T) {
	tt := mustParse(t, minimalYAML)
	if err := ValidateContext(tt, []byte(`"anything"`)); err != nil {
		t.Fatal(err)
	}
	if err := ValidateContext(nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestValidateContextBooleanAndDraft4Schemas(t *testing.T) {
	tt := mustParse(t, `
name: t
namespace_name: ns
version: '1'
input_schema:
  type: object
  properties:
    forbidden: false
    n: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 5, exclusiveMaximum: true}
    pair: {type: array, items: [{type: string}, {type: integer}]}
  additionalProperties: {type: string}
steps:
  - {name: a, handler: {callable: x}}
`)
	err := ValidateContext(tt, []byte(`{"forbidden":1,"n":5,"pair":["a","b"],"extra":1}`))
	var ce *ContextError
	if !errors.As(err, &ce) {
		t.Fatalf("want *ContextError, got %v", err)
	}
	got := make([]string, len(ce.Problems))
	for i, p := range ce.Problems {
		got[i] = p.String()
	}
	want := []string{
		"extra: must be of type string (got integer)",
		"forbidden: not allowed",
		"n: must be < 5 (got 5)",
		"pair[1]: must be of type integer (got string)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems\n got: %q\nwant: %q", got, want)
	}
	if err := ValidateContext(tt, []byte(`{"n":0.5,"pair":["a",1],"extra":"ok"}`)); err != nil {
		t.Fatalf("valid context rejected: %v", err)
	}
}
