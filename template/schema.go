package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	gourl "net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// ValidateContext checks a task's context against the template's input_schema and returns a
// *ContextError naming each failing field, or nil. A template without input_schema accepts
// any context. An empty context is validated as JSON null.
//
// input_schema is full JSON Schema (github.com/santhosh-tekuri/jsonschema): draft 2020-12
// unless the schema's $schema names draft-04, -06, -07 or 2019-09. Every keyword applies,
// including $ref/$defs, combinators and if/then/else. Only references inside the schema
// resolve: nothing is loaded from files or the network. format is asserted for every format
// the library knows (uuid, date-time, date, time, email, hostname, ipv4, ipv6, uri, ...);
// unknown formats are ignored. pattern uses Go RE2 syntax. "integer" accepts 2.0, and numbers
// are compared exactly.
//
// Schemas are compiled once (by Validate at registration, or on first use) and cached by
// content, so templates re-read from named_tasks and event declarations re-parsed per step do
// not recompile. A schema that does not compile yields a *ValidationError naming the keyword;
// Validate reports the same problems at registration.
//
// tasker-core's orchestrator does not validate input_schema at all; this is for Go callers
// that want to refuse bad requests before creating a task.
func ValidateContext(tmpl *TaskTemplate, context json.RawMessage) error {
	if tmpl == nil || isAbsent(tmpl.InputSchema) {
		return nil
	}
	s, problems := compileSchema(tmpl.InputSchema)
	if problems != nil {
		for i := range problems {
			problems[i].Path = under("input_schema", problems[i].Path)
		}
		return &ValidationError{Source: tmpl.Source, Problems: problems}
	}
	if problems := s.check(context); len(problems) > 0 {
		return &ContextError{Template: tmpl.Key(), Problems: problems}
	}
	return nil
}

// compiledSchema is a JSON Schema document compiled once; it is safe for concurrent use.
type compiledSchema struct {
	sch *jsonschema.Schema
}

// schemaURL is the address a schema is compiled under; local references resolve against it.
const schemaURL = "tasker:///schema.json"

// Cache bounds: templates hold few distinct schemas; when the cache is full an arbitrary entry
// makes room.
const (
	maxCachedSchemas     = 512
	maxCachedSchemaBytes = 64 << 10
)

// maxSchemaValues bounds a schema's size (real ones hold a few hundred values); with the
// nesting limit maxDepth it keeps compilation under a second.
const maxSchemaValues = 20_000

var schemaCache = struct {
	sync.Mutex
	m map[string]*compiledSchema
}{m: map[string]*compiledSchema{}}

// compileSchema returns raw compiled (from the cache when possible), or the problems that
// make it unusable with paths inside the schema ("" is the schema itself).
func compileSchema(raw json.RawMessage) (*compiledSchema, []Problem) {
	schemaCache.Lock()
	s, ok := schemaCache.m[string(raw)]
	schemaCache.Unlock()
	if ok {
		return s, nil
	}
	doc, err := decodeJSON(raw)
	if err != nil {
		return nil, []Problem{{Message: "invalid JSON: " + err.Error()}}
	}
	switch doc.(type) {
	case map[string]any, bool:
	default:
		return nil, []Problem{{Message: "must be a JSON Schema (an object or a boolean)"}}
	}
	// Compiling costs grow with the square of the depth and of the number of subschemas.
	budget := maxSchemaValues
	if msg := tooLarge(doc, maxDepth, &budget); msg != "" {
		return nil, []Problem{{Message: msg}}
	}
	doc, _ = clampNumbers(doc)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, []Problem{{Message: err.Error()}}
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, compileProblems(err, doc)
	}
	s = &compiledSchema{sch: sch}
	if len(raw) <= maxCachedSchemaBytes {
		schemaCache.Lock()
		for k := range schemaCache.m {
			if len(schemaCache.m) < maxCachedSchemas {
				break
			}
			delete(schemaCache.m, k)
		}
		schemaCache.m[string(raw)] = s
		schemaCache.Unlock()
	}
	return s, nil
}

// tooLarge explains why a schema document is too deep or too big to compile, or returns "".
// budget counts down the JSON values seen.
func tooLarge(v any, depth int, budget *int) string {
	if depth < 0 {
		return fmt.Sprintf("schema nested deeper than %d levels", maxDepth)
	}
	if *budget--; *budget < 0 {
		return fmt.Sprintf("schema has more than %d JSON values", maxSchemaValues)
	}
	var children []any
	switch x := v.(type) {
	case map[string]any:
		children = slices.Collect(maps.Values(x))
	case []any:
		children = x
	}
	for _, e := range children {
		if msg := tooLarge(e, depth-1, budget); msg != "" {
			return msg
		}
	}
	return ""
}

// under prefixes a problem path found inside a schema with the schema's own path.
func under(prefix, p string) string {
	if p == "" {
		return prefix
	}
	return join(prefix, p)
}

// noLoader refuses every document outside the schema being compiled.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, errors.New("only references inside the schema are resolved")
}

// decodeJSON decodes one JSON value keeping numbers exact; empty input is null.
func decodeJSON(data []byte) (any, error) {
	var v any
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the top-level value")
	}
	return v, nil
}

// check validates the JSON document doc and returns its problems sorted by path, or nil.
func (s *compiledSchema) check(doc json.RawMessage) []Problem {
	orig, err := decodeJSON(doc)
	if err != nil {
		return []Problem{{Message: "invalid JSON: " + err.Error()}}
	}
	inst, _ := clampNumbers(orig)
	err = s.sch.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Problem{{Message: err.Error()}}
	}
	r := reporter{orig: orig, inst: inst}
	return sortProblems(r.flatten(ve))
}

func sortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Path != ps[j].Path {
			return ps[i].Path < ps[j].Path
		}
		return ps[i].Message < ps[j].Message
	})
	return slices.CompactFunc(ps, func(a, b Problem) bool { return a == b })
}

// clampNumbers returns v with every number whose exponent is beyond ±400 replaced by ±1e400 or
// ±1e-400 (far outside any schema bound, same sign and integrality), so a hostile literal such
// as 1e999999999 costs nothing to compare. v itself is not modified; changed reports a copy.
func clampNumbers(v any) (out any, changed bool) {
	switch x := v.(type) {
	case json.Number:
		if c, ok := clampNumber(x); ok {
			return c, true
		}
	case []any:
		var cp []any
		for i, e := range x {
			if c, ok := clampNumbers(e); ok {
				if cp == nil {
					cp = slices.Clone(x)
				}
				cp[i] = c
			}
		}
		if cp != nil {
			return cp, true
		}
	case map[string]any:
		var cp map[string]any
		for k, e := range x {
			if c, ok := clampNumbers(e); ok {
				if cp == nil {
					cp = maps.Clone(x)
				}
				cp[k] = c
			}
		}
		if cp != nil {
			return cp, true
		}
	}
	return v, false
}

func clampNumber(n json.Number) (json.Number, bool) {
	s := string(n)
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return n, false
	}
	expText := s[i+1:]
	exp, err := strconv.Atoi(strings.TrimPrefix(expText, "+"))
	if err == nil && exp >= -400 && exp <= 400 {
		return n, false
	}
	if mant, ok := new(big.Rat).SetString(s[:i]); ok && mant.Sign() == 0 {
		return "0", true
	}
	out := "1e400"
	if (err == nil && exp < 0) || (err != nil && strings.HasPrefix(expText, "-")) {
		out = "1e-400"
	}
	if strings.HasPrefix(s, "-") {
		out = "-" + out
	}
	return json.Number(out), true
}

// printer renders the library's own messages (used for kinds without a message of ours).
var printer = message.NewPrinter(language.English)

// reporter turns the library's error tree into Problems with paths in this package's form
// ("items[0].sku"). inst is the validated value, orig the same before clampNumbers.
type reporter struct {
	orig, inst any
}

// path renders an instance location; tokens addressing an array element become "[i]".
func (r reporter) path(loc []string) string {
	p := ""
	cur := r.inst
	for _, tok := range loc {
		if arr, ok := cur.([]any); ok {
			p = p + "[" + tok + "]"
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(arr) {
				cur = arr[i]
			} else {
				cur = nil
			}
			continue
		}
		p = join(p, tok)
		m, _ := cur.(map[string]any)
		cur = m[tok]
	}
	return p
}

// at returns the value at loc in the original (unclamped) document.
func (r reporter) at(loc []string) any {
	cur := r.orig
	for _, tok := range loc {
		switch x := cur.(type) {
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			cur = x[i]
		case map[string]any:
			cur = x[tok]
		default:
			return nil
		}
	}
	return cur
}

func (r reporter) problem(loc []string, msg string) Problem {
	return Problem{Path: r.path(loc), Message: msg}
}

func (r reporter) flatten(e *jsonschema.ValidationError) []Problem {
	loc := e.InstanceLocation
	var out []Problem
	switch k := e.ErrorKind.(type) {
	case *kind.Group, *kind.AllOf, *kind.Reference, *kind.Schema:
		for _, c := range e.Causes {
			out = append(out, r.flatten(c)...)
		}
		if len(out) == 0 {
			out = append(out, r.problem(loc, e.ErrorKind.LocalizedString(printer)))
		}
	case *kind.Required:
		for _, m := range k.Missing {
			out = append(out, r.problem(append(slices.Clip(loc), m), "required"))
		}
	case *kind.DependentRequired:
		for _, m := range k.Missing {
			out = append(out, r.problem(append(slices.Clip(loc), m), fmt.Sprintf("required when %q is present", k.Prop)))
		}
	case *kind.Dependency:
		for _, m := range k.Missing {
			out = append(out, r.problem(append(slices.Clip(loc), m), fmt.Sprintf("required when %q is present", k.Prop)))
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			out = append(out, r.problem(append(slices.Clip(loc), p), "unexpected property (additionalProperties is false)"))
		}
	case *kind.PropertyNames:
		sub := reporter{orig: k.Property, inst: k.Property}
		var msgs []string
		for _, c := range e.Causes {
			for _, p := range sub.flatten(c) {
				msgs = append(msgs, p.Message)
			}
		}
		out = append(out, r.problem(append(slices.Clip(loc), k.Property), "property name "+strings.Join(msgs, "; ")))
	case *kind.AnyOf:
		out = r.alternatives(e, "must match at least one anyOf schema")
	case *kind.OneOf:
		if len(k.Subschemas) == 0 {
			out = r.alternatives(e, "must match exactly one oneOf schema, but matches none")
		} else {
			out = append(out, r.problem(loc, fmt.Sprintf("must match exactly one oneOf schema, but matches schemas %d and %d", k.Subschemas[0], k.Subschemas[1])))
		}
	default:
		out = append(out, r.problem(loc, r.message(e)))
	}
	return out
}

// unwrap descends through wrappers ($ref, single-error groups) to the error that says why.
func unwrap(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) == 1 {
		switch e.ErrorKind.(type) {
		case *kind.Group, *kind.AllOf, *kind.Reference, *kind.Schema:
			e = e.Causes[0]
			continue
		}
		break
	}
	return e
}

// alternatives reports a failed anyOf/oneOf. Alternatives the value failed only by type are
// dropped when another got further (it is the one the author meant); one remaining
// alternative is reported as itself, several as one problem listing each.
func (r reporter) alternatives(e *jsonschema.ValidationError, lead string) []Problem {
	loc := e.InstanceLocation
	var kept []*jsonschema.ValidationError
	for _, c := range e.Causes {
		u := unwrap(c)
		if _, isType := u.ErrorKind.(*kind.Type); !isType || !slices.Equal(u.InstanceLocation, loc) {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		kept = e.Causes
	}
	if len(kept) == 1 {
		return r.flatten(kept[0])
	}
	var types, values []string
	consts := 0
	for _, c := range kept {
		u := unwrap(c)
		if !slices.Equal(u.InstanceLocation, loc) {
			continue
		}
		switch k := u.ErrorKind.(type) {
		case *kind.Type:
			for _, w := range k.Want {
				if !slices.Contains(types, w) {
					types = append(types, w)
				}
			}
		case *kind.Const:
			consts++
			values = append(values, render(k.Want))
		case *kind.Enum:
			consts++
			for _, w := range k.Want {
				values = append(values, render(w))
			}
		}
	}
	got := r.at(loc)
	switch {
	case len(types) == 1:
		return []Problem{r.problem(loc, fmt.Sprintf("must be of type %s (got %s)", types[0], jsonType(got)))}
	case len(types) > 1:
		return []Problem{r.problem(loc, fmt.Sprintf("must be one of types %s (got %s)", strings.Join(types, ", "), jsonType(got)))}
	case consts == len(kept):
		return []Problem{r.problem(loc, fmt.Sprintf("must be one of %s (got %s)", strings.Join(values, ", "), brief(got)))}
	}
	base := r.path(loc)
	parts := make([]string, len(kept))
	for i, c := range kept {
		ps := sortProblems(r.flatten(c))
		texts := make([]string, len(ps))
		for j, p := range ps {
			rel := strings.TrimPrefix(strings.TrimPrefix(p.Path, base), ".")
			if rel == "" {
				texts[j] = p.Message
			} else {
				texts[j] = rel + ": " + p.Message
			}
		}
		parts[i] = strings.Join(texts, ", ")
	}
	return []Problem{r.problem(loc, lead+" ("+strings.Join(parts, "; or ")+")")}
}

// message describes one failed keyword.
func (r reporter) message(e *jsonschema.ValidationError) string {
	got := r.at(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		if len(k.Want) == 1 {
			return fmt.Sprintf("must be of type %s (got %s)", k.Want[0], jsonType(got))
		}
		return fmt.Sprintf("must be one of types %s (got %s)", strings.Join(k.Want, ", "), jsonType(got))
	case *kind.Enum:
		opts := make([]string, len(k.Want))
		for i, w := range k.Want {
			opts[i] = render(w)
		}
		return fmt.Sprintf("must be one of %s (got %s)", strings.Join(opts, ", "), brief(got))
	case *kind.Const:
		return fmt.Sprintf("must be %s (got %s)", brief(k.Want), brief(got))
	case *kind.FalseSchema:
		return "not allowed"
	case *kind.Not:
		return `must not match the "not" schema`
	case *kind.Minimum:
		return fmt.Sprintf("must be >= %s (got %s)", decimal(k.Want), brief(got))
	case *kind.Maximum:
		return fmt.Sprintf("must be <= %s (got %s)", decimal(k.Want), brief(got))
	case *kind.ExclusiveMinimum:
		return fmt.Sprintf("must be > %s (got %s)", decimal(k.Want), brief(got))
	case *kind.ExclusiveMaximum:
		return fmt.Sprintf("must be < %s (got %s)", decimal(k.Want), brief(got))
	case *kind.MultipleOf:
		return fmt.Sprintf("must be a multiple of %s (got %s)", decimal(k.Want), brief(got))
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters", k.Want)
	case *kind.Pattern:
		return fmt.Sprintf("must match pattern %q", k.Want)
	case *kind.Format:
		switch k.Want {
		case "uuid":
			return "must be a UUID"
		case "date-time":
			return "must be an RFC 3339 date-time"
		case "date":
			return "must be a date (YYYY-MM-DD)"
		case "email":
			return "must be an email address"
		case "regex":
			return fmt.Sprintf("is not a valid regular expression (Go RE2 syntax): %v", k.Err)
		}
		return fmt.Sprintf("must be a valid %s: %v", k.Want, k.Err)
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items", k.Want)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items", k.Want)
	case *kind.AdditionalItems:
		return fmt.Sprintf("has %d more items than allowed (additionalItems is false)", k.Count)
	case *kind.UniqueItems:
		return fmt.Sprintf("items must be unique ([%d] and [%d] are equal)", k.Duplicates[0], k.Duplicates[1])
	case *kind.Contains:
		return "must contain an item matching the contains schema"
	case *kind.MinContains:
		return fmt.Sprintf("must contain at least %d items matching the contains schema (%d do)", k.Want, len(k.Got))
	case *kind.MaxContains:
		return fmt.Sprintf("must contain at most %d items matching the contains schema (%d do)", k.Want, len(k.Got))
	case *kind.RefCycle:
		return fmt.Sprintf("the schema cannot be applied: its references loop without reaching a keyword (%s and %s)", k.KeywordLocation1, k.KeywordLocation2)
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d properties", k.Want)
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %d properties", k.Want)
	}
	return e.ErrorKind.LocalizedString(printer)
}

// jsonType names v's JSON type; a number with an integral value is "integer".
func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		c, _ := clampNumber(x)
		if r, ok := new(big.Rat).SetString(string(c)); ok && r.IsInt() {
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

// decimal writes r in decimal notation when that is exact (0.01 rather than 1/100).
func decimal(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	for prec := 1; prec <= 30; prec++ {
		s := r.FloatString(prec)
		if back, ok := new(big.Rat).SetString(s); ok && back.Cmp(r) == 0 {
			return s
		}
	}
	return r.RatString()
}

func render(v any) string {
	return string(canonicalJSON(v))
}

// brief renders v as JSON, shortened for messages.
func brief(v any) string {
	s := render(v)
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// compileProblems explains why a schema did not compile, at the keyword responsible.
func compileProblems(err error, doc any) []Problem {
	r := reporter{orig: doc, inst: doc}
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
		return sortProblems(r.flatten(ve))
	}
	var (
		notFound  *jsonschema.JSONPointerNotFoundError
		badPtr    *jsonschema.InvalidJsonPointerError
		noAnchor  *jsonschema.AnchorNotFoundError
		load      *jsonschema.LoadURLError
		badRegex  *jsonschema.InvalidRegexError
		badDraft  *jsonschema.UnsupportedDraftError
		metaCycle *jsonschema.MetaSchemaCycleError
	)
	switch {
	case errors.As(err, &notFound):
		return r.refProblem(notFound.URL, "reference %q does not resolve to anything in this schema")
	case errors.As(err, &badPtr):
		return r.refProblem(badPtr.URL, "reference %q is not a valid JSON pointer")
	case errors.As(err, &noAnchor):
		return r.refProblem(noAnchor.Reference, "reference %q names an anchor this schema does not define")
	case errors.As(err, &load):
		return r.refProblem(load.URL, "reference %q is not allowed: only references inside this schema ($defs, definitions, anchors) resolve")
	case errors.As(err, &badRegex):
		if loc, ok := localPointer(badRegex.URL); ok {
			return []Problem{r.problem(loc, fmt.Sprintf("%q is not a valid regular expression (Go RE2 syntax): %v", badRegex.Regex, badRegex.Err))}
		}
	case errors.As(err, &badDraft), errors.As(err, &metaCycle):
		return r.refProblem("", "unsupported $schema %q")
	}
	return []Problem{{Message: err.Error()}}
}

// localPointer converts a URL inside the compiled schema ("tasker:///schema.json#/a/b") to
// location tokens.
func localPointer(u string) ([]string, bool) {
	base, frag, ok := strings.Cut(u, "#")
	if !ok || base != schemaURL || (frag != "" && !strings.HasPrefix(frag, "/")) {
		return nil, false
	}
	frag, err := gourl.PathUnescape(frag)
	if err != nil {
		return nil, false
	}
	if frag == "" {
		return nil, true
	}
	toks := strings.Split(frag[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, true
}

// refProblem reports a reference that cannot be used at the $ref (or $schema) that names
// target; format gets the reference as written. An empty target matches any $schema.
func (r reporter) refProblem(target, format string) []Problem {
	if loc, lit, ok := findRef(r.inst, nil, schemaURL, target); ok {
		if loc[len(loc)-1] == "$schema" {
			format = "unsupported $schema %q (want a JSON Schema draft: draft-04, -06, -07, 2019-09 or 2020-12)"
		}
		return []Problem{r.problem(loc, fmt.Sprintf(format, lit))}
	}
	return []Problem{{Message: fmt.Sprintf(format, target)}}
}

var refKeywords = []string{"$ref", "$dynamicRef", "$recursiveRef", "$schema"}

// findRef walks the schema document (object keys in sorted order, tracking $id bases) for the
// first reference keyword whose resolved URL is target, with or without its fragment.
func findRef(v any, loc []string, base, target string) ([]string, string, bool) {
	switch x := v.(type) {
	case map[string]any:
		if id, ok := x["$id"].(string); ok {
			if u, err := resolveURL(base, id); err == nil {
				base, _, _ = strings.Cut(u, "#")
			}
		}
		for _, kw := range refKeywords {
			lit, ok := x[kw].(string)
			if !ok {
				continue
			}
			u, err := resolveURL(base, lit)
			if err != nil {
				continue
			}
			noFrag, _, _ := strings.Cut(u, "#")
			if u == target || noFrag == target || (target == "" && kw == "$schema") {
				return append(slices.Clip(loc), kw), lit, true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if l, lit, ok := findRef(x[k], append(slices.Clip(loc), k), base, target); ok {
				return l, lit, true
			}
		}
	case []any:
		for i, e := range x {
			if l, lit, ok := findRef(e, append(slices.Clip(loc), strconv.Itoa(i)), base, target); ok {
				return l, lit, true
			}
		}
	}
	return nil, "", false
}

func resolveURL(base, ref string) (string, error) {
	b, err := gourl.Parse(base)
	if err != nil {
		return "", err
	}
	r, err := gourl.Parse(ref)
	if err != nil {
		return "", err
	}
	return b.ResolveReference(r).String(), nil
}
