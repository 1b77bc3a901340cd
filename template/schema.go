package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ValidateContext checks a task's context against the template's input_schema and returns a
// *ContextError naming each failing field, or nil. A template without input_schema accepts
// any context. An empty context is validated as JSON null.
//
// Supported JSON Schema keywords: type (string or list; "integer" accepts 2.0), required,
// properties (recursive), additionalProperties (false or a schema), enum, const, minimum,
// maximum, exclusiveMinimum, exclusiveMaximum (number, or draft-4 boolean), minLength,
// maxLength (in characters), pattern (Go RE2 syntax), format (uuid, date-time, date, email),
// items (schema or list of schemas), minItems, maxItems. Other keywords are ignored.
//
// tasker-core's orchestrator does not validate input_schema at all; this is for Go callers
// that want to refuse bad requests before creating a task.
func ValidateContext(tmpl *TaskTemplate, context json.RawMessage) error {
	if tmpl == nil || isAbsent(tmpl.InputSchema) {
		return nil
	}
	var schemaProblems []Problem
	s := compileSchema(tmpl.InputSchema, "input_schema", func(p, msg string) {
		schemaProblems = append(schemaProblems, Problem{Path: p, Message: msg})
	})
	if len(schemaProblems) > 0 {
		return &ValidationError{Source: tmpl.Source, Problems: schemaProblems}
	}
	var v any
	if len(bytes.TrimSpace(context)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(context))
		dec.UseNumber()
		err := dec.Decode(&v)
		if err == nil {
			if _, tail := dec.Token(); !errors.Is(tail, io.EOF) {
				err = errors.New("data after the top-level value")
			}
		}
		if err != nil {
			return &ContextError{Template: tmpl.Key(), Problems: []Problem{{Message: "invalid JSON: " + err.Error()}}}
		}
	}
	var problems []Problem
	s.check(v, "", &problems)
	if len(problems) > 0 {
		return &ContextError{Template: tmpl.Key(), Problems: problems}
	}
	return nil
}

// schema is a compiled subset of JSON Schema.
type schema struct {
	always          *bool // boolean schema
	types           []string
	required        []string
	properties      map[string]*schema
	additional      *schema
	noAdditional    bool
	enum            []any
	hasConst        bool
	constant        any
	minimum         *big.Rat
	maximum         *big.Rat
	exclusiveMin    *big.Rat
	exclusiveMax    *big.Rat
	minLength       *int
	maxLength       *int
	pattern         *regexp.Regexp
	format          string
	items           *schema
	prefixItems     []*schema
	minItems        *int
	maxItems        *int
	draft4ExclusMin bool
	draft4ExclusMax bool
}

var schemaTypes = []string{"null", "boolean", "object", "array", "number", "integer", "string"}

// compileSchema decodes and compiles raw, reporting malformed keywords through add.
func compileSchema(raw json.RawMessage, path string, add func(path, msg string)) *schema {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		add(path, "invalid JSON: "+err.Error())
		return &schema{}
	}
	return compileValue(v, path, add, 0)
}

func compileValue(v any, path string, add func(path, msg string), depth int) *schema {
	s := &schema{}
	if depth > maxDepth {
		add(path, "schema nested too deeply")
		return s
	}
	switch x := v.(type) {
	case bool:
		s.always = &x
		return s
	case map[string]any:
		s.compileObject(x, path, add, depth)
		return s
	default:
		add(path, "must be a JSON Schema (an object or a boolean)")
		return s
	}
}

func (s *schema) compileObject(m map[string]any, path string, add func(path, msg string), depth int) {
	nonNegInt := func(key string) *int {
		raw, ok := m[key]
		if !ok {
			return nil
		}
		n, ok := raw.(json.Number)
		if r, good := ratOf(n); ok && good && r.IsInt() && r.Sign() >= 0 && r.Num().IsInt64() {
			i := int(r.Num().Int64())
			return &i
		}
		add(join(path, key), "must be a non-negative integer")
		return nil
	}
	number := func(key string) *big.Rat {
		raw, ok := m[key]
		if !ok {
			return nil
		}
		if n, isNum := raw.(json.Number); isNum {
			if r, good := ratOf(n); good {
				return r
			}
		}
		if _, isBool := raw.(bool); isBool && (key == "exclusiveMinimum" || key == "exclusiveMaximum") {
			return nil // draft-4 form, handled below
		}
		add(join(path, key), "must be a number")
		return nil
	}

	if raw, ok := m["type"]; ok {
		switch x := raw.(type) {
		case string:
			s.types = []string{x}
		case []any:
			for _, e := range x {
				str, isStr := e.(string)
				if !isStr {
					add(join(path, "type"), "must be a type name or a list of type names")
					s.types = nil
					break
				}
				s.types = append(s.types, str)
			}
		default:
			add(join(path, "type"), "must be a type name or a list of type names")
		}
		for _, ty := range s.types {
			if !slices.Contains(schemaTypes, ty) {
				add(join(path, "type"), fmt.Sprintf("unknown type %q (want one of %s)", ty, strings.Join(schemaTypes, ", ")))
			}
		}
	}
	if raw, ok := m["required"]; ok {
		list, isList := raw.([]any)
		if !isList {
			add(join(path, "required"), "must be a list of property names")
		}
		for _, e := range list {
			name, isStr := e.(string)
			if !isStr {
				add(join(path, "required"), "must be a list of property names")
				break
			}
			s.required = append(s.required, name)
		}
	}
	if raw, ok := m["properties"]; ok {
		props, isMap := raw.(map[string]any)
		if !isMap {
			add(join(path, "properties"), "must be a mapping of property name to schema")
		}
		s.properties = map[string]*schema{}
		names := make([]string, 0, len(props))
		for name := range props {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			s.properties[name] = compileValue(props[name], join(join(path, "properties"), name), add, depth+1)
		}
	}
	if raw, ok := m["additionalProperties"]; ok {
		if b, isBool := raw.(bool); isBool {
			s.noAdditional = !b
		} else {
			s.additional = compileValue(raw, join(path, "additionalProperties"), add, depth+1)
		}
	}
	if raw, ok := m["enum"]; ok {
		list, isList := raw.([]any)
		if !isList || len(list) == 0 {
			add(join(path, "enum"), "must be a non-empty list")
		}
		s.enum = list
	}
	if raw, ok := m["const"]; ok {
		s.hasConst, s.constant = true, raw
	}
	s.minimum = number("minimum")
	s.maximum = number("maximum")
	s.exclusiveMin = number("exclusiveMinimum")
	s.exclusiveMax = number("exclusiveMaximum")
	if b, ok := m["exclusiveMinimum"].(bool); ok {
		s.draft4ExclusMin = b
	}
	if b, ok := m["exclusiveMaximum"].(bool); ok {
		s.draft4ExclusMax = b
	}
	s.minLength = nonNegInt("minLength")
	s.maxLength = nonNegInt("maxLength")
	s.minItems = nonNegInt("minItems")
	s.maxItems = nonNegInt("maxItems")
	if raw, ok := m["pattern"]; ok {
		str, isStr := raw.(string)
		re, err := regexp.Compile(str)
		switch {
		case !isStr:
			add(join(path, "pattern"), "must be a string")
		case err != nil:
			add(join(path, "pattern"), "is not a valid regular expression (Go RE2 syntax): "+err.Error())
		default:
			s.pattern = re
		}
	}
	if raw, ok := m["format"]; ok {
		str, isStr := raw.(string)
		if !isStr {
			add(join(path, "format"), "must be a string")
		}
		s.format = str
	}
	if raw, ok := m["items"]; ok {
		if list, isList := raw.([]any); isList {
			for i, sub := range list {
				s.prefixItems = append(s.prefixItems, compileValue(sub, index(join(path, "items"), i), add, depth+1))
			}
		} else {
			s.items = compileValue(raw, join(path, "items"), add, depth+1)
		}
	}
}

// ratOf converts a JSON number exactly. Exponents beyond ±400 (far outside any schema bound)
// are clamped to ±1e400 or 0 so a hostile literal such as 1e999999999 cannot make big.Rat
// allocate without limit.
func ratOf(n json.Number) (*big.Rat, bool) {
	s := string(n)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || exp > 400 || exp < -400 {
			neg := strings.HasPrefix(s, "-")
			mant, ok := new(big.Rat).SetString(s[:i])
			if !ok {
				return nil, false
			}
			if mant.Sign() == 0 || (err == nil && exp < -400) || (err != nil && strings.HasPrefix(s[i+1:], "-")) {
				return new(big.Rat), true
			}
			huge := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(400), nil))
			if neg {
				huge.Neg(huge)
			}
			return huge, true
		}
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		if r, ok := ratOf(x); ok && r.IsInt() {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

func typeMatches(want, got string) bool {
	return want == got || (want == "number" && got == "integer")
}

func render(v any) string {
	return string(canonicalJSON(v))
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (s *schema) check(v any, path string, out *[]Problem) {
	add := func(p, format string, args ...any) {
		*out = append(*out, Problem{Path: p, Message: fmt.Sprintf(format, args...)})
	}
	if s.always != nil {
		if !*s.always {
			add(path, "not allowed")
		}
		return
	}
	got := jsonType(v)
	if len(s.types) > 0 && !slices.ContainsFunc(s.types, func(w string) bool { return typeMatches(w, got) }) {
		if len(s.types) == 1 {
			add(path, "must be of type %s (got %s)", s.types[0], got)
		} else {
			add(path, "must be one of types %s (got %s)", strings.Join(s.types, ", "), got)
		}
		return
	}
	if s.enum != nil && !slices.ContainsFunc(s.enum, func(e any) bool { return jsonEqual(e, v) }) {
		opts := make([]string, len(s.enum))
		for i, e := range s.enum {
			opts[i] = render(e)
		}
		add(path, "must be one of %s (got %s)", strings.Join(opts, ", "), render(v))
	}
	if s.hasConst && !jsonEqual(s.constant, v) {
		add(path, "must be %s", render(s.constant))
	}
	switch x := v.(type) {
	case json.Number:
		s.checkNumber(x, path, add)
	case string:
		s.checkString(x, path, add)
	case []any:
		if s.minItems != nil && len(x) < *s.minItems {
			add(path, "must have at least %d items", *s.minItems)
		}
		if s.maxItems != nil && len(x) > *s.maxItems {
			add(path, "must have at most %d items", *s.maxItems)
		}
		for i, e := range x {
			switch {
			case i < len(s.prefixItems):
				s.prefixItems[i].check(e, index(path, i), out)
			case s.items != nil && s.prefixItems == nil:
				s.items.check(e, index(path, i), out)
			}
		}
	case map[string]any:
		for _, name := range s.required {
			if _, ok := x[name]; !ok {
				add(join(path, name), "required")
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if sub, ok := s.properties[k]; ok {
				sub.check(x[k], join(path, k), out)
				continue
			}
			switch {
			case s.noAdditional:
				add(join(path, k), "unexpected property (additionalProperties is false)")
			case s.additional != nil:
				s.additional.check(x[k], join(path, k), out)
			}
		}
	}
}

func (s *schema) checkNumber(n json.Number, path string, add func(p, format string, args ...any)) {
	r, ok := ratOf(n)
	if !ok {
		return
	}
	if s.minimum != nil {
		if c := r.Cmp(s.minimum); c < 0 || (c == 0 && s.draft4ExclusMin) {
			op := ">="
			if s.draft4ExclusMin {
				op = ">"
			}
			add(path, "must be %s %s (got %s)", op, s.minimum.RatString(), n)
		}
	}
	if s.maximum != nil {
		if c := r.Cmp(s.maximum); c > 0 || (c == 0 && s.draft4ExclusMax) {
			op := "<="
			if s.draft4ExclusMax {
				op = "<"
			}
			add(path, "must be %s %s (got %s)", op, s.maximum.RatString(), n)
		}
	}
	if s.exclusiveMin != nil && r.Cmp(s.exclusiveMin) <= 0 {
		add(path, "must be > %s (got %s)", s.exclusiveMin.RatString(), n)
	}
	if s.exclusiveMax != nil && r.Cmp(s.exclusiveMax) >= 0 {
		add(path, "must be < %s (got %s)", s.exclusiveMax.RatString(), n)
	}
}

func (s *schema) checkString(str, path string, add func(p, format string, args ...any)) {
	n := utf8.RuneCountInString(str)
	if s.minLength != nil && n < *s.minLength {
		add(path, "must be at least %d characters", *s.minLength)
	}
	if s.maxLength != nil && n > *s.maxLength {
		add(path, "must be at most %d characters", *s.maxLength)
	}
	if s.pattern != nil && !s.pattern.MatchString(str) {
		add(path, "must match pattern %q", s.pattern.String())
	}
	switch s.format {
	case "uuid":
		if !uuidPattern.MatchString(str) {
			add(path, "must be a UUID")
		}
	case "date-time":
		if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
			add(path, "must be an RFC 3339 date-time")
		}
	case "date":
		if _, err := time.Parse(time.DateOnly, str); err != nil {
			add(path, "must be a date (YYYY-MM-DD)")
		}
	case "email":
		at := strings.IndexByte(str, '@')
		if at <= 0 || at == len(str)-1 || strings.Count(str, "@") != 1 || strings.ContainsAny(str, " \t\r\n") {
			add(path, "must be an email address")
		}
	}
}

// jsonEqual compares decoded JSON values; numbers compare by value (1 equals 1.0).
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		rx, okx := ratOf(x)
		ry, oky := ratOf(y)
		return okx && oky && rx.Cmp(ry) == 0
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, present := y[k]
			if !present || !jsonEqual(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}
