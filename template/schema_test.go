package template

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
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

// problemStrings renders problems as ContextError does.
func problemStrings(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
		if p.Path == "" {
			out[i] = "(context): " + p.Message
		}
	}
	return out
}

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
		{"missing required", `{"customer":{"id":7}}`, []string{"customer.email: required", "items: required"}},
		{"wrong types", `{"customer":{"id":"7","email":5},"items":{}}`,
			[]string{"customer.email: must be of type string (got integer)", "customer.id: must be of type integer (got string)", "items: must be of type array (got object)"}},
		// A failed format stops the other string checks of that schema (maxLength here).
		{"bounds and formats", `{"customer":{"id":0,"email":"not-an-email-address-long"},"items":[{"sku":"wid-1","quantity":11,"price":0}],"method":"slow","note":"x","order_id":"nope","exact":4}`,
			[]string{
				"customer.email: must be an email address",
				"customer.id: must be >= 1 (got 0)",
				"exact: must be 3 (got 4)",
				`items[0].price: must be > 0 (got 0)`,
				"items[0].quantity: must be <= 10 (got 11)",
				`items[0].sku: must match pattern "^[A-Z]+-[0-9]{3}$"`,
				`method: must be one of "standard", "express" (got "slow")`,
				"note: must be at least 2 characters",
				"order_id: must be a UUID",
			}},
		{"too long", `{"customer":{"id":1,"email":"a@very-long-domain.example"},"items":[{"sku":"AB-123","quantity":1}]}`,
			[]string{"customer.email: must be at most 20 characters"}},
		{"non-integer", `{"customer":{"id":1.5,"email":"a@b.co"},"items":[]}`,
			[]string{"customer.id: must be of type integer (got number)", "items: must have at least 1 items"}},
		{"additional property", `{"customer":{"id":1,"email":"a@b.co"},"items":[{"sku":"AB-123","quantity":1}],"onboarding":true}`,
			[]string{"onboarding: unexpected property (additionalProperties is false)"}},
		{"not an object", `[1]`, []string{"(context): must be of type object (got array)"}},
		{"empty context is null", ``, []string{"(context): must be of type object (got null)"}},
		{"invalid JSON", `{"a":`, []string{"(context): invalid JSON: unexpected EOF"}},
		{"trailing data", `{} {}`, []string{"(context): invalid JSON: data after the top-level value"}},
		{"huge exponents do not hang", `{"customer":{"id":1e999999999,"email":"a@b.co"},"items":[{"sku":"AB-123","quantity":-1e999999999},{"sku":"AB-123","quantity":1e-999999999}]}`,
			[]string{"items[0].quantity: must be >= 1 (got -1e999999999)", "items[1].quantity: must be of type integer (got number)"}},
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
			if got := problemStrings(ce.Problems); !reflect.DeepEqual(got, tc.want) {
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

// schemaTemplate builds a valid template around an input_schema given as JSON.
func schemaTemplate(t *testing.T, schema string) *TaskTemplate {
	t.Helper()
	tt, err := ParseJSON([]byte(`{"name":"t","namespace_name":"ns","version":"1","input_schema":`+schema+
		`,"steps":[{"name":"a","handler":{"callable":"x"}}]}`), "schema.json")
	if err != nil {
		t.Fatalf("ParseJSON: %v", err)
	}
	if err := tt.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return tt
}

// TestValidateContextKeywords: every keyword family accepts a conforming context and refuses
// one that breaks it, naming the failing field.
func TestValidateContextKeywords(t *testing.T) {
	cases := []struct {
		name, schema, accept, refuse string
		path, msg                    string // a problem of the refusal: its path and part of its message
	}{
		// types
		{"type integer accepts 2.0", `{"properties":{"n":{"type":"integer"}}}`, `{"n":2.0}`, `{"n":2.5}`, "n", "must be of type integer (got number)"},
		{"type list", `{"type":["string","null"]}`, `null`, `1`, "", "must be one of types null, string (got integer)"},
		{"type boolean", `{"properties":{"b":{"type":"boolean"}}}`, `{"b":false}`, `{"b":"false"}`, "b", "must be of type boolean (got string)"},
		{"boolean schema", `{"properties":{"gone":false,"any":true}}`, `{"any":[1]}`, `{"gone":1}`, "gone", "not allowed"},
		// enum / const
		{"enum", `{"enum":["a",1,null]}`, `1.0`, `"b"`, "", `must be one of "a", 1, null (got "b")`},
		{"const", `{"properties":{"c":{"const":{"k":[1,2]}}}}`, `{"c":{"k":[1.0,2]}}`, `{"c":{"k":[2,1]}}`, "c", `must be {"k":[1,2]}`},
		// numbers
		{"minimum", `{"minimum":1}`, `1`, `0.5`, "", "must be >= 1 (got 0.5)"},
		{"maximum", `{"maximum":10}`, `10`, `10.01`, "", "must be <= 10 (got 10.01)"},
		{"exclusiveMinimum", `{"exclusiveMinimum":0}`, `0.001`, `0`, "", "must be > 0 (got 0)"},
		{"exclusiveMaximum", `{"exclusiveMaximum":1}`, `0.999`, `1.0`, "", "must be < 1 (got 1.0)"},
		{"multipleOf", `{"multipleOf":0.01}`, `19.99`, `19.995`, "", "must be a multiple of 0.01 (got 19.995)"},
		{"big integers stay exact", `{"maximum":9007199254740992}`, `9007199254740992`, `9007199254740993`, "", "must be <= 9007199254740992 (got 9007199254740993)"},
		// strings
		{"minLength counts characters", `{"minLength":2}`, `"日本"`, `"日"`, "", "must be at least 2 characters"},
		{"maxLength", `{"maxLength":3}`, `"日本語"`, `"日本語x"`, "", "must be at most 3 characters"},
		{"pattern", `{"pattern":"^[A-Z]{3}$"}`, `"ABC"`, `"abc"`, "", `must match pattern "^[A-Z]{3}$"`},
		{"format uuid", `{"format":"uuid"}`, `"0190b8e2-7c1d-7000-8000-000000000001"`, `"0190b8e2"`, "", "must be a UUID"},
		{"format date-time", `{"format":"date-time"}`, `"2026-03-21T21:16:08.5Z"`, `"2026-03-21 21:16"`, "", "must be an RFC 3339 date-time"},
		{"format date", `{"format":"date"}`, `"2026-02-28"`, `"2026-02-30"`, "", "must be a date (YYYY-MM-DD)"},
		{"format email", `{"format":"email"}`, `"ops@example.com"`, `"ops at example.com"`, "", "must be an email address"},
		{"format ipv4", `{"format":"ipv4"}`, `"10.0.0.1"`, `"10.0.0.256"`, "", "must be a valid ipv4"},
		{"unknown format is an annotation", `{"format":"sku-code","maxLength":1}`, `"x"`, `"xy"`, "", "must be at most 1 characters"},
		// arrays
		{"items", `{"items":{"type":"integer"}}`, `[1,2]`, `[1,"x"]`, "[1]", "must be of type integer (got string)"},
		{"prefixItems", `{"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}`, `["a",1]`, `["a",1,2]`, "[2]", "not allowed"},
		{"minItems", `{"minItems":1}`, `[0]`, `[]`, "", "must have at least 1 items"},
		{"maxItems", `{"maxItems":2}`, `[1,2]`, `[1,2,3]`, "", "must have at most 2 items"},
		{"uniqueItems", `{"uniqueItems":true}`, `[1,"1"]`, `[1,2,1.0]`, "", "items must be unique ([0] and [2] are equal)"},
		{"contains", `{"contains":{"const":"x"}}`, `["a","x"]`, `["a","b"]`, "", "must contain an item matching the contains schema"},
		{"maxContains", `{"contains":{"const":"x"},"maxContains":1}`, `["x","a"]`, `["x","x"]`, "", "must contain at most 1 items matching the contains schema (2 do)"},
		// objects
		{"required", `{"required":["a"]}`, `{"a":null}`, `{"b":1}`, "a", "required"},
		{"properties nested", `{"properties":{"o":{"properties":{"list":{"items":{"properties":{"v":{"type":"string"}}}}}}}}`,
			`{"o":{"list":[{"v":"x"}]}}`, `{"o":{"list":[{"v":"x"},{"v":1}]}}`, "o.list[1].v", "must be of type string (got integer)"},
		{"additionalProperties false", `{"properties":{"a":{}},"additionalProperties":false}`, `{"a":1}`, `{"a":1,"b":2}`, "b", "unexpected property (additionalProperties is false)"},
		{"additionalProperties schema", `{"properties":{"a":{}},"additionalProperties":{"type":"string"}}`, `{"a":1,"b":"x"}`, `{"b":2}`, "b", "must be of type string (got integer)"},
		{"patternProperties", `{"patternProperties":{"^n_":{"type":"number"}}}`, `{"n_a":1,"s":"x"}`, `{"n_a":"x"}`, "n_a", "must be of type number (got string)"},
		{"propertyNames", `{"propertyNames":{"pattern":"^[a-z]+$"}}`, `{"ab":1}`, `{"ab":1,"Ab":2}`, "Ab", `property name must match pattern "^[a-z]+$"`},
		{"minProperties", `{"minProperties":1}`, `{"a":1}`, `{}`, "", "must have at least 1 properties"},
		{"maxProperties", `{"maxProperties":1}`, `{"a":1}`, `{"a":1,"b":2}`, "", "must have at most 1 properties"},
		{"dependentRequired", `{"dependentRequired":{"card":["cvv"]}}`, `{"card":"1","cvv":"2"}`, `{"card":"1"}`, "cvv", `required when "card" is present`},
		{"dependentSchemas", `{"dependentSchemas":{"card":{"properties":{"cvv":{"pattern":"^[0-9]{3}$"}}}}}`, `{"cvv":"x"}`, `{"card":"1","cvv":"x"}`, "cvv", "must match pattern"},
		{"unevaluatedProperties", `{"allOf":[{"properties":{"a":{}}}],"unevaluatedProperties":false}`, `{"a":1}`, `{"a":1,"z":1}`, "z", "not allowed"},
		// combinators
		{"allOf", `{"allOf":[{"minimum":0},{"maximum":10}]}`, `5`, `11`, "", "must be <= 10 (got 11)"},
		{"anyOf reports the alternative of the right type", `{"anyOf":[{"type":"string","maxLength":3},{"type":"integer"}]}`, `5`, `"abcd"`, "", "must be at most 3 characters"},
		{"anyOf of types", `{"properties":{"v":{"anyOf":[{"type":"string"},{"type":"integer"}]}}}`, `{"v":"x"}`, `{"v":{}}`, "v", "must be one of types string, integer (got object)"},
		{"anyOf lists alternatives", `{"anyOf":[{"required":["a"]},{"required":["b"]}]}`, `{"b":1}`, `{"c":1}`, "", "must match at least one anyOf schema (a: required; or b: required)"},
		{"oneOf matching two", `{"oneOf":[{"multipleOf":3},{"multipleOf":5}]}`, `9`, `15`, "", "must match exactly one oneOf schema, but matches schemas 0 and 1"},
		{"oneOf matching none", `{"oneOf":[{"multipleOf":3},{"multipleOf":5}]}`, `10`, `7`, "", "must match exactly one oneOf schema, but matches none (must be a multiple of 3 (got 7); or must be a multiple of 5 (got 7))"},
		{"not", `{"not":{"type":"null"}}`, `1`, `null`, "", `must not match the "not" schema`},
		{"if then else", `{"if":{"properties":{"kind":{"const":"card"}}},"then":{"required":["card_number"]},"else":{"required":["iban"]}}`,
			`{"kind":"card","card_number":"1"}`, `{"kind":"bank"}`, "iban", "required"},
		// references
		{"$ref to $defs", `{"$defs":{"sku":{"type":"string","pattern":"^[A-Z]+-[0-9]{3}$"}},"properties":{"items":{"type":"array","items":{"$ref":"#/$defs/sku"}}}}`,
			`{"items":["AB-123"]}`, `{"items":["AB-123","x"]}`, "items[1]", "must match pattern"},
		{"recursive $ref", `{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}},"$ref":"#/$defs/node"}`,
			`{"v":1,"children":[{"v":2,"children":[]}]}`, `{"v":1,"children":[{"children":[{"v":"x"}]}]}`, "children[0].children[0].v", "must be of type integer (got string)"},
		{"$ref to an anchor", `{"$defs":{"pos":{"$anchor":"positive","exclusiveMinimum":0}},"properties":{"n":{"$ref":"#positive"}}}`, `{"n":1}`, `{"n":0}`, "n", "must be > 0 (got 0)"},
		{"draft-07 definitions", `{"$schema":"http://json-schema.org/draft-07/schema#","definitions":{"pos":{"minimum":1}},"properties":{"n":{"$ref":"#/definitions/pos"}}}`,
			`{"n":1}`, `{"n":0}`, "n", "must be >= 1 (got 0)"},
		{"draft-04 boolean exclusiveMinimum", `{"$schema":"http://json-schema.org/draft-04/schema#","minimum":0,"exclusiveMinimum":true}`, `0.1`, `0`, "", "must be > 0 (got 0)"},
		{"draft-04 items list", `{"$schema":"http://json-schema.org/draft-04/schema#","items":[{"type":"string"},{"type":"integer"}]}`, `["a",1,null]`, `["a","b"]`, "[1]", "must be of type integer (got string)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tt := schemaTemplate(t, tc.schema)
			if err := ValidateContext(tt, []byte(tc.accept)); err != nil {
				t.Errorf("accept %s: %v", tc.accept, err)
			}
			err := ValidateContext(tt, []byte(tc.refuse))
			var ce *ContextError
			if !errors.As(err, &ce) {
				t.Fatalf("refuse %s: want *ContextError, got %T %v", tc.refuse, err, err)
			}
			for _, p := range ce.Problems {
				if p.Path == tc.path && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("refuse %s: problems %q, want one at %q containing %q", tc.refuse, problemStrings(ce.Problems), tc.path, tc.msg)
		})
	}
}

// TestValidateContextFormerlyIgnoredKeywords: contexts the hand-written subset accepted
// because it ignored multipleOf, oneOf and $ref.
func TestValidateContextFormerlyIgnoredKeywords(t *testing.T) {
	cases := []struct{ name, schema, context, want string }{
		{"multipleOf", `{"type":"object","properties":{"qty":{"type":"integer","multipleOf":5}}}`, `{"qty":7}`,
			"qty: must be a multiple of 5 (got 7)"},
		{"oneOf of constants", `{"type":"object","properties":{"tier":{"oneOf":[{"const":"gold"},{"const":"silver"}]}}}`, `{"tier":"bronze"}`,
			`tier: must be one of "gold", "silver" (got "bronze")`},
		{"$ref'd pattern", `{"$defs":{"code":{"type":"string","pattern":"^[A-Z]{3}$"}},"type":"object","properties":{"currency":{"$ref":"#/$defs/code"}}}`, `{"currency":"usd"}`,
			`currency: must match pattern "^[A-Z]{3}$"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateContext(schemaTemplate(t, tc.schema), []byte(tc.context))
			var ce *ContextError
			if !errors.As(err, &ce) {
				t.Fatalf("want *ContextError, got %T %v", err, err)
			}
			if got := problemStrings(ce.Problems); !reflect.DeepEqual(got, []string{tc.want}) {
				t.Fatalf("problems %q, want [%q]", got, tc.want)
			}
		})
	}
}

// TestInvalidSchemaRejected: Validate (what registration and `tasker templates validate`
// run) refuses a schema that does not compile, naming the file and the keyword.
func TestInvalidSchemaRejected(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"type":"string"}`)
	}))
	defer srv.Close()
	hostFile := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(hostFile, []byte(`{"type":"string"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, schema string
		want         string // "<path>: <message>" of the one problem
	}{
		{"misspelt type", `{"type":"strnig"}`,
			`input_schema.type: must be one of "array", "boolean", "integer", "null", "number", "object", "string" (got "strnig")`},
		{"minimum not a number", `{"properties":{"n":{"minimum":"x"}}}`,
			"input_schema.properties.n.minimum: must be of type number (got string)"},
		{"negative maxLength", `{"properties":{"s":{"maxLength":-1}}}`, "input_schema.properties.s.maxLength: must be >= 0 (got -1)"},
		{"bad regex", `{"patternProperties":{"(?<=x)":{}}}`, "input_schema.patternProperties.(?<=x): property name is not a valid regular expression (Go RE2 syntax): error parsing regexp: invalid named capture: `(?<=x)`"},
		{"not a schema", `[{"type":"string"}]`, "input_schema: must be a JSON Schema (an object or a boolean)"},
		{"draft-04 keyword form under 2020-12", `{"minimum":0,"exclusiveMinimum":true}`, "input_schema.exclusiveMinimum: must be of type number (got boolean)"},
		{"dangling $ref", `{"properties":{"a":{"type":"array","items":{"$ref":"#/$defs/missing"}}}}`,
			`input_schema.properties.a.items.$ref: reference "#/$defs/missing" does not resolve to anything in this schema`},
		{"dangling definitions $ref", `{"$schema":"http://json-schema.org/draft-07/schema#","allOf":[{"$ref":"#/definitions/x"}]}`,
			`input_schema.allOf[0].$ref: reference "#/definitions/x" does not resolve to anything in this schema`},
		{"missing anchor", `{"properties":{"a":{"$ref":"#nowhere"}}}`,
			`input_schema.properties.a.$ref: reference "#nowhere" names an anchor this schema does not define`},
		{"remote $ref", `{"properties":{"a":{"$ref":"` + srv.URL + `/s.json"}}}`,
			`input_schema.properties.a.$ref: reference "` + srv.URL + `/s.json" is not allowed: only references inside this schema ($defs, definitions, anchors) resolve`},
		{"file $ref", `{"$ref":"file://` + hostFile + `"}`,
			`input_schema.$ref: reference "file://` + hostFile + `" is not allowed: only references inside this schema ($defs, definitions, anchors) resolve`},
		{"relative $ref", `{"$ref":"other.json#/x"}`,
			`input_schema.$ref: reference "other.json#/x" is not allowed: only references inside this schema ($defs, definitions, anchors) resolve`},
		{"$ref against a remote $id", `{"$id":"` + srv.URL + `/root.json","properties":{"a":{"$ref":"b.json"}}}`,
			`input_schema.properties.a.$ref: reference "b.json" is not allowed: only references inside this schema ($defs, definitions, anchors) resolve`},
		{"unknown $schema", `{"$schema":"` + srv.URL + `/meta"}`,
			`input_schema.$schema: unsupported $schema "` + srv.URL + `/meta" (want a JSON Schema draft: draft-04, -06, -07, 2019-09 or 2020-12)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "name: t\nnamespace_name: ns\nversion: '1'\ninput_schema: " + tc.schema + "\nsteps:\n  - {name: a, handler: {callable: x}}\n"
			tt, err := Parse([]byte(src), "templates/bad.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = tt.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate: want *ValidationError, got %T %v", err, err)
			}
			if ve.Source != "templates/bad.yaml" || err.Error() != "templates/bad.yaml: "+tc.want {
				t.Fatalf("Validate error\n got: %s\nwant: templates/bad.yaml: %s", err, tc.want)
			}
			// ValidateContext reports the same schema problem rather than accepting.
			if err := ValidateContext(tt, []byte(`"x"`)); !errors.As(err, &ve) || err.Error() != "templates/bad.yaml: "+tc.want {
				t.Fatalf("ValidateContext: %v", err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("schema compilation made %d HTTP requests", n)
	}
}

// Schemas elsewhere in a template (domain events, result_schema, publishes_events) are
// checked the same way, under their own paths.
func TestInvalidSchemasOutsideInputSchema(t *testing.T) {
	tt := mustParse(t, `
name: t
namespace_name: ns
version: '1'
domain_events:
  - {name: order.created, schema: {type: objekt}}
steps:
  - name: a
    handler: {callable: x}
    result_schema: {properties: {n: {$ref: '#/$defs/none'}}}
    publishes_events:
      - {name: order.paid, description: d, schema: {required: [1]}}
`)
	err := tt.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	want := []string{
		`domain_events[0].schema.type: must be one of "array", "boolean", "integer", "null", "number", "object", "string" (got "objekt")`,
		`steps[0].publishes_events[0].schema.required[0]: must be of type string (got integer)`,
		`steps[0].result_schema.properties.n.$ref: reference "#/$defs/none" does not resolve to anything in this schema`,
	}
	if got := problemStrings(ve.Problems); !reflect.DeepEqual(got, want) {
		t.Fatalf("problems\n got: %q\nwant: %q", got, want)
	}
}

// A hand-built template (no Parse, no Validate) gets the same checks, including the refusal
// of an unusable schema.
func TestValidateContextHandBuiltTemplate(t *testing.T) {
	tt := &TaskTemplate{Name: "n", NamespaceName: "ns", Version: "1", Source: "code", InputSchema: []byte(`{"type":"object","required":["a"]}`)}
	var ce *ContextError
	if err := ValidateContext(tt, []byte(`{}`)); !errors.As(err, &ce) || problemStrings(ce.Problems)[0] != "a: required" {
		t.Fatalf("got %v", err)
	}
	tt.InputSchema = []byte(`{"type":"objekt"}`)
	var ve *ValidationError
	if err := ValidateContext(tt, []byte(`{}`)); !errors.As(err, &ve) || !strings.HasPrefix(err.Error(), "code: input_schema.type: ") {
		t.Fatalf("got %v", err)
	}
	tt.InputSchema = []byte(`{"type":`)
	if err := ValidateContext(tt, []byte(`{}`)); !errors.As(err, &ve) || err.Error() != "code: input_schema: invalid JSON: unexpected EOF" {
		t.Fatalf("got %v", err)
	}
}

// A schema nested deeper than a template may be (an event declaration's, say), or huge, is
// refused before compiling, whose cost grows with the square of the depth and the size.
func TestSchemaTooDeep(t *testing.T) {
	deep := strings.Repeat(`{"items":`, 5000) + "true" + strings.Repeat("}", 5000)
	tt := &TaskTemplate{Name: "n", NamespaceName: "ns", Version: "1", InputSchema: []byte(deep)}
	var ve *ValidationError
	if err := ValidateContext(tt, []byte(`[]`)); !errors.As(err, &ve) || err.Error() != "template: input_schema: schema nested deeper than 64 levels" {
		t.Fatalf("got %v", err)
	}
	ok := strings.Repeat(`{"items":`, 64) + "true" + strings.Repeat("}", 64)
	if _, problems := compileSchema([]byte(ok)); problems != nil {
		t.Fatalf("64 levels refused: %v", problems)
	}
	wide := `{"anyOf":[` + strings.TrimSuffix(strings.Repeat(`{"type":"integer"},`, 20_000), ",") + `]}`
	tt.InputSchema = []byte(wide)
	if err := ValidateContext(tt, []byte(`1`)); !errors.As(err, &ve) || err.Error() != "template: input_schema: schema has more than 20000 JSON values" {
		t.Fatalf("got %v", err)
	}
}

// A schema is compiled once and then shared, also by concurrent validations.
func TestSchemaCompiledOnce(t *testing.T) {
	raw := []byte(`{"type":"object","properties":{"n":{"type":"integer","multipleOf":2}},"required":["n"]}`)
	a, problems := compileSchema(raw)
	if problems != nil {
		t.Fatal(problems)
	}
	b, _ := compileSchema(append([]byte(nil), raw...))
	if a != b {
		t.Fatal("the same schema was compiled twice")
	}
	tt := &TaskTemplate{Name: "n", NamespaceName: "ns", Version: "1", InputSchema: raw}
	var wg sync.WaitGroup
	var wrong atomic.Int32
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				n := i*50 + j
				err := ValidateContext(tt, fmt.Appendf(nil, `{"n":%d}`, n))
				if (err == nil) != (n%2 == 0) {
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d wrong results under concurrency", wrong.Load())
	}
}

// A $ref cycle that never reaches a keyword is reported, not looped on.
func TestValidateContextRefCycle(t *testing.T) {
	tt := &TaskTemplate{Name: "n", NamespaceName: "ns", Version: "1",
		InputSchema: []byte(`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`)}
	err := ValidateContext(tt, []byte(`{}`))
	if err == nil {
		t.Fatal("a context was accepted by a schema that is an endless $ref cycle")
	}
}
