package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Option changes how Parse reads a document.
type Option func(*parseOptions)

type parseOptions struct {
	allowUnknown bool
}

// AllowUnknownFields makes Parse drop keys tasker-core does not define instead of reporting
// them, which is what tasker-core itself does. Use it to load templates written for the Rust
// workers (some carry keys such as loaded_from or retry.limit). By default unknown keys are
// problems, so a misspelt "dependecies" cannot silently drop a step's dependencies.
func AllowUnknownFields() Option { return func(o *parseOptions) { o.allowUnknown = true } }

// Limits that keep hostile documents (alias bombs, recursive anchors) cheap to reject.
const (
	maxNodes = 200_000
	maxDepth = 64
)

// Parse reads one YAML task template. It checks the document's shape: YAML syntax, one
// document, value types, enum values and unknown keys. It returns a *ValidationError listing
// every shape problem. Parse does not call Validate.
//
// Differences from tasker-core's serde reading, all in the direction of reporting more:
// an explicit null is treated as an absent key, merge keys (<<) are refused, and unknown keys
// are refused unless AllowUnknownFields is given (keys under metadata are always accepted and
// dropped, since metadata is documentation).
func Parse(data []byte, source string, opts ...Option) (*TaskTemplate, error) {
	var o parseOptions
	for _, opt := range opts {
		opt(&o)
	}
	p := &parser{opts: o}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return nil, &ValidationError{Source: source, Problems: []Problem{{Message: "empty document"}}}
	case err != nil:
		return nil, &ValidationError{Source: source, Problems: []Problem{{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Source: source, Problems: []Problem{{Message: "a template file must hold exactly one YAML document", Line: extra.Line}}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(p.deref(root)) {
		return nil, &ValidationError{Source: source, Problems: []Problem{{Message: "empty document"}}}
	}
	t := p.template(root)
	if len(p.problems) > 0 {
		return nil, &ValidationError{Source: source, Problems: p.problems}
	}
	t.Source = source
	return t, nil
}

// ParseJSON reads a template from its JSON form (named_tasks.configuration) with tasker-core's
// defaults and aliases. Unknown keys are ignored.
func ParseJSON(data []byte, source string) (*TaskTemplate, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &ValidationError{Source: source, Problems: []Problem{{Message: "invalid JSON: " + err.Error()}}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Source: source, Problems: []Problem{{Message: "invalid JSON: data after the top-level value"}}}
	}
	if v == nil {
		return nil, &ValidationError{Source: source, Problems: []Problem{{Message: "empty document"}}}
	}
	p := &parser{opts: parseOptions{allowUnknown: true}}
	t := p.template(nodeFromJSON(v))
	if len(p.problems) > 0 {
		return nil, &ValidationError{Source: source, Problems: p.problems}
	}
	t.Source = source
	return t, nil
}

type parser struct {
	opts     parseOptions
	problems []Problem
	nodes    int
	overflow bool
}

func (p *parser) add(path string, n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.problems = append(p.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...), Line: line})
}

// deref follows aliases and counts the node against the document budget. It returns nil when
// the budget is spent (reported once).
func (p *parser) deref(n *yaml.Node) *yaml.Node {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if hops > maxDepth {
			return nil
		}
		n = n.Alias
	}
	p.nodes++
	if p.nodes > maxNodes {
		if !p.overflow {
			p.overflow = true
			p.add("", nil, "document too large (more than %d YAML nodes after alias expansion)", maxNodes)
		}
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

type fieldSpec struct {
	name  string
	alias string
	fn    func(path string, v *yaml.Node)
}

// retired keys are known not to be tasker-core fields; strict parsing explains them.
var retired = map[string]string{
	"task_handler":        "task_handler is no longer part of tasker-core's template format (tasker-core ignores it); remove it",
	"retry.limit":         "limit is not a tasker-core retry field (tasker-core ignores it and uses max_attempts, default 3); use max_attempts",
	"retry.initial_delay": "initial_delay is not a tasker-core retry field (tasker-core ignores it); use backoff_base_ms",
	"retry.max_delay":     "max_delay is not a tasker-core retry field (tasker-core ignores it); use max_backoff_ms",
}

// object walks a mapping, dispatching each key to its field. what names the mapping in
// messages; unknownOK accepts (and drops) keys not in specs; kind is the key used for retired
// field explanations.
func (p *parser) object(path string, n *yaml.Node, what, kind string, unknownOK bool, specs []fieldSpec) {
	if n.Kind != yaml.MappingNode {
		p.add(path, n, "must be a mapping (%s)", what)
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := p.deref(n.Content[i])
		if k == nil {
			return
		}
		if k.Kind != yaml.ScalarNode {
			p.add(path, k, "mapping keys must be strings")
			continue
		}
		key := k.Value
		if k.ShortTag() == "!!merge" {
			p.add(join(path, key), k, "YAML merge keys (<<) are not supported")
			continue
		}
		idx := slices.IndexFunc(specs, func(s fieldSpec) bool { return s.name == key || (s.alias != "" && s.alias == key) })
		if idx < 0 {
			if unknownOK || p.opts.allowUnknown {
				continue
			}
			if msg, ok := retired[join(kind, key)]; ok {
				p.add(join(path, key), k, "%s", msg)
			} else {
				p.add(join(path, key), k, "unknown field (%s)", fieldList(specs))
			}
			continue
		}
		spec := specs[idx]
		if prev, dup := seen[spec.name]; dup {
			p.add(join(path, key), k, "duplicate field %q (already given at line %d)", spec.name, prev.Line)
			continue
		}
		seen[spec.name] = k
		v := p.deref(n.Content[i+1])
		if p.overflow {
			return
		}
		if isNull(v) {
			continue // an explicit null is the same as an absent key
		}
		spec.fn(join(path, key), v)
	}
}

func fieldList(specs []fieldSpec) string {
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if s.alias != "" {
			names = append(names, s.name+"/"+s.alias)
		} else {
			names = append(names, s.name)
		}
	}
	return "known fields: " + strings.Join(names, ", ")
}

// sequence calls fn for each item of a sequence.
func (p *parser) sequence(path string, n *yaml.Node, what string, fn func(path string, item *yaml.Node)) {
	if n.Kind != yaml.SequenceNode {
		p.add(path, n, "must be a list (%s)", what)
		return
	}
	for i, c := range n.Content {
		item := p.deref(c)
		if p.overflow {
			return
		}
		fn(index(path, i), item)
	}
}

// str reads a string. Any plain scalar is accepted as its text (version: 1.0 is "1.0"),
// as serde_yaml does for string fields.
func (p *parser) str(path string, n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		p.add(path, n, "must be a string")
		return ""
	}
	return n.Value
}

func (p *parser) optStr(path string, n *yaml.Node) *string {
	s := p.str(path, n)
	return &s
}

func (p *parser) strList(path string, n *yaml.Node) []string {
	out := []string{}
	p.sequence(path, n, "of strings", func(ip string, item *yaml.Node) {
		if isNull(item) {
			p.add(ip, item, "must be a string")
			return
		}
		out = append(out, p.str(ip, item))
	})
	return out
}

func (p *parser) boolean(path string, n *yaml.Node) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.add(path, n, "must be true or false")
	}
	return b
}

// integer reads an integer in [lo, hi] (the range of the Rust field's type).
func (p *parser) integer(path string, n *yaml.Node, lo, hi int64, typ string) int64 {
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		p.add(path, n, "must be an integer")
		return 0
	}
	if v < lo || v > hi {
		if lo == 0 && v < 0 {
			p.add(path, n, "must not be negative")
		} else {
			p.add(path, n, "out of range for %s", typ)
		}
		return 0
	}
	return v
}

func (p *parser) u32(path string, n *yaml.Node) uint32 {
	return uint32(p.integer(path, n, 0, math.MaxUint32, "u32"))
}

func (p *parser) optU32(path string, n *yaml.Node) *uint32 {
	v := p.u32(path, n)
	return &v
}

func (p *parser) optU64(path string, n *yaml.Node) *uint64 {
	v := uint64(p.integer(path, n, 0, math.MaxInt64, "u64"))
	return &v
}

func (p *parser) optI32(path string, n *yaml.Node) *int32 {
	v := int32(p.integer(path, n, math.MinInt32, math.MaxInt32, "i32"))
	return &v
}

func (p *parser) optBool(path string, n *yaml.Node) *bool {
	v := p.boolean(path, n)
	return &v
}

// enum reads one of allowed (exact, snake_case, as serde reads it).
func (p *parser) enum(path string, n *yaml.Node, what string, allowed []string) string {
	if n.Kind != yaml.ScalarNode {
		p.add(path, n, "must be a string (%s)", what)
		return ""
	}
	if !slices.Contains(allowed, n.Value) {
		p.add(path, n, "unknown %s %q (want one of %s)", what, n.Value, strings.Join(allowed, ", "))
		return ""
	}
	return n.Value
}

// jsonValue converts a free-form YAML value (schemas, initialization values) to canonical JSON.
func (p *parser) jsonValue(path string, n *yaml.Node) json.RawMessage {
	v, ok := p.value(path, n, 0)
	if !ok {
		return nil
	}
	return canonicalJSON(v)
}

func (p *parser) jsonMap(path string, n *yaml.Node) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	if n.Kind != yaml.MappingNode {
		p.add(path, n, "must be a mapping")
		return out
	}
	v, ok := p.value(path, n, 0)
	if !ok {
		return out
	}
	for k, val := range v.(map[string]any) {
		out[k] = canonicalJSON(val)
	}
	return out
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// value converts a YAML node to a JSON-compatible Go value: map[string]any, []any, string,
// json.Number, bool or nil. Numbers that are already valid JSON keep their literal text.
func (p *parser) value(path string, n *yaml.Node, depth int) (any, bool) {
	if depth > maxDepth {
		p.add(path, n, "nesting deeper than %d levels (or a recursive alias)", maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		lines := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := p.deref(n.Content[i])
			if k == nil {
				return nil, false
			}
			if k.Kind != yaml.ScalarNode {
				p.add(path, k, "mapping keys must be strings")
				return nil, false
			}
			if k.ShortTag() == "!!merge" {
				p.add(join(path, k.Value), k, "YAML merge keys (<<) are not supported")
				return nil, false
			}
			if prev, dup := lines[k.Value]; dup {
				p.add(join(path, k.Value), k, "duplicate key (already given at line %d)", prev)
				return nil, false
			}
			lines[k.Value] = k.Line
			c := p.deref(n.Content[i+1])
			if c == nil {
				return nil, false
			}
			v, ok := p.value(join(path, k.Value), c, depth+1)
			if !ok {
				return nil, false
			}
			m[k.Value] = v
		}
		return m, true
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			c = p.deref(c)
			if c == nil {
				return nil, false
			}
			v, ok := p.value(index(path, i), c, depth+1)
			if !ok {
				return nil, false
			}
			s = append(s, v)
		}
		return s, true
	case yaml.ScalarNode:
		return p.scalar(path, n)
	default:
		p.add(path, n, "unsupported YAML node")
		return nil, false
	}
}

func (p *parser) scalar(path string, n *yaml.Node) (any, bool) {
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil, true
	case "!!str", "!!timestamp", "!!binary":
		return n.Value, true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			p.add(path, n, "invalid boolean %q", n.Value)
			return nil, false
		}
		return b, true
	case "!!int", "!!float":
		if jsonNumber.MatchString(n.Value) {
			return json.Number(n.Value), true
		}
		var f any
		if err := n.Decode(&f); err != nil {
			p.add(path, n, "invalid number %q", n.Value)
			return nil, false
		}
		switch x := f.(type) {
		case int:
			return json.Number(strconv.FormatInt(int64(x), 10)), true
		case int64:
			return json.Number(strconv.FormatInt(x, 10)), true
		case uint64:
			return json.Number(strconv.FormatUint(x, 10)), true
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, true // serde_json turns non-finite floats into null
			}
			return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), true
		}
		p.add(path, n, "invalid number %q", n.Value)
		return nil, false
	default:
		p.add(path, n, "unsupported YAML tag %s", tag)
		return nil, false
	}
}

// canonicalJSON encodes v compactly with sorted object keys and without HTML escaping.
func canonicalJSON(v any) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// v only holds JSON-compatible values built by this package.
		panic(fmt.Sprintf("template: encode JSON value: %v", err))
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// nodeFromJSON builds a YAML node tree from a decoded JSON value so JSON and YAML share one reader.
func nodeFromJSON(v any) *yaml.Node {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, k := range keys {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, nodeFromJSON(x[k]))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range x {
			n.Content = append(n.Content, nodeFromJSON(e))
		}
		return n
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x}
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(x), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(x)}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
	default:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
}

// ---- the template structure ----

func (p *parser) template(root *yaml.Node) *TaskTemplate {
	t := &TaskTemplate{
		SystemDependencies: SystemDependencies{Primary: "default", Secondary: []string{}},
		DomainEvents:       []DomainEventDefinition{},
		Steps:              []StepDefinition{},
		Environments:       map[string]EnvironmentOverride{},
	}
	root = p.deref(root)
	if root == nil {
		return t
	}
	if root.Kind != yaml.MappingNode {
		p.add("", root, "a template must be a mapping with name, namespace_name, version and steps")
		return t
	}
	p.object("", root, "task template", "", false, []fieldSpec{
		{name: "name", fn: func(path string, v *yaml.Node) { t.Name = p.str(path, v) }},
		{name: "namespace_name", fn: func(path string, v *yaml.Node) { t.NamespaceName = p.str(path, v) }},
		{name: "version", fn: func(path string, v *yaml.Node) { t.Version = p.str(path, v) }},
		{name: "description", fn: func(path string, v *yaml.Node) { t.Description = p.optStr(path, v) }},
		{name: "metadata", fn: func(path string, v *yaml.Node) { t.Metadata = p.metadata(path, v) }},
		{name: "system_dependencies", fn: func(path string, v *yaml.Node) { p.systemDependencies(path, v, &t.SystemDependencies) }},
		{name: "domain_events", fn: func(path string, v *yaml.Node) { t.DomainEvents = p.domainEvents(path, v) }},
		{name: "input_schema", fn: func(path string, v *yaml.Node) { t.InputSchema = p.jsonValue(path, v) }},
		{name: "steps", fn: func(path string, v *yaml.Node) { t.Steps = p.steps(path, v) }},
		{name: "environments", fn: func(path string, v *yaml.Node) { t.Environments = p.environments(path, v) }},
		{name: "lifecycle", fn: func(path string, v *yaml.Node) { t.Lifecycle = p.lifecycle(path, v) }},
		{name: "identity_strategy", fn: func(path string, v *yaml.Node) {
			t.IdentityStrategy = IdentityStrategy(p.enum(path, v, "identity strategy", identityStrategies))
		}},
	})
	return t
}

func (p *parser) metadata(path string, n *yaml.Node) *TemplateMetadata {
	m := &TemplateMetadata{Tags: []string{}}
	ts := func(path string, v *yaml.Node) *Timestamp {
		s := p.str(path, v)
		tm, err := parseTimestamp(s)
		if err != nil {
			p.add(path, v, "must be an RFC 3339 timestamp such as 2025-08-29T00:00:00Z")
			return nil
		}
		return &Timestamp{tm}
	}
	p.object(path, n, "template metadata", "metadata", true, []fieldSpec{
		{name: "author", fn: func(path string, v *yaml.Node) { m.Author = p.optStr(path, v) }},
		{name: "tags", fn: func(path string, v *yaml.Node) { m.Tags = p.strList(path, v) }},
		{name: "documentation_url", fn: func(path string, v *yaml.Node) { m.DocumentationURL = p.optStr(path, v) }},
		{name: "created_at", fn: func(path string, v *yaml.Node) { m.CreatedAt = ts(path, v) }},
		{name: "updated_at", fn: func(path string, v *yaml.Node) { m.UpdatedAt = ts(path, v) }},
	})
	return m
}

func (p *parser) systemDependencies(path string, n *yaml.Node, sd *SystemDependencies) {
	p.object(path, n, "system dependencies", "system_dependencies", false, []fieldSpec{
		{name: "primary", fn: func(path string, v *yaml.Node) { sd.Primary = p.str(path, v) }},
		{name: "secondary", fn: func(path string, v *yaml.Node) { sd.Secondary = p.strList(path, v) }},
	})
}

func (p *parser) domainEvents(path string, n *yaml.Node) []DomainEventDefinition {
	out := []DomainEventDefinition{}
	p.sequence(path, n, "of domain events", func(ip string, item *yaml.Node) {
		var d DomainEventDefinition
		if isNull(item) {
			p.add(ip, item, "must be a mapping (domain event)")
			return
		}
		p.object(ip, item, "domain event", "domain_events", false, []fieldSpec{
			{name: "name", fn: func(path string, v *yaml.Node) { d.Name = p.str(path, v) }},
			{name: "description", fn: func(path string, v *yaml.Node) { d.Description = p.optStr(path, v) }},
			{name: "schema", fn: func(path string, v *yaml.Node) { d.Schema = p.jsonValue(path, v) }},
		})
		out = append(out, d)
	})
	return out
}

func (p *parser) steps(path string, n *yaml.Node) []StepDefinition {
	out := []StepDefinition{}
	p.sequence(path, n, "of steps", func(ip string, item *yaml.Node) {
		if isNull(item) {
			p.add(ip, item, "must be a mapping (step)")
			return
		}
		out = append(out, p.step(ip, item))
	})
	return out
}

func (p *parser) step(path string, n *yaml.Node) StepDefinition {
	s := StepDefinition{
		Type:            StepStandard,
		Dependencies:    []string{},
		Retry:           DefaultRetry(),
		PublishesEvents: []EventDeclaration{},
		Handler:         HandlerDefinition{Initialization: map[string]json.RawMessage{}},
	}
	p.object(path, n, "step", "step", false, []fieldSpec{
		{name: "name", fn: func(path string, v *yaml.Node) { s.Name = p.str(path, v) }},
		{name: "description", fn: func(path string, v *yaml.Node) { s.Description = p.optStr(path, v) }},
		{name: "handler", fn: func(path string, v *yaml.Node) { p.handler(path, v, &s.Handler) }},
		{name: "type", alias: "step_type", fn: func(path string, v *yaml.Node) {
			s.Type = StepType(p.enum(path, v, "step type", stepTypes))
		}},
		{name: "system_dependency", fn: func(path string, v *yaml.Node) { s.SystemDependency = p.optStr(path, v) }},
		{name: "dependencies", alias: "depends_on", fn: func(path string, v *yaml.Node) { s.Dependencies = p.strList(path, v) }},
		{name: "retry", fn: func(path string, v *yaml.Node) { s.Retry = p.retry(path, v) }},
		{name: "timeout_seconds", fn: func(path string, v *yaml.Node) { s.TimeoutSeconds = p.optU32(path, v) }},
		{name: "publishes_events", fn: func(path string, v *yaml.Node) { s.PublishesEvents = p.events(path, v) }},
		{name: "batch_config", fn: func(path string, v *yaml.Node) { s.BatchConfig = p.batchConfig(path, v) }},
		{name: "result_schema", fn: func(path string, v *yaml.Node) { s.ResultSchema = p.jsonValue(path, v) }},
		{name: "composition", fn: func(path string, v *yaml.Node) { s.Composition = p.jsonValue(path, v) }},
	})
	return s
}

func (p *parser) handler(path string, n *yaml.Node, h *HandlerDefinition) {
	p.object(path, n, "step handler", "handler", false, []fieldSpec{
		{name: "callable", fn: func(path string, v *yaml.Node) { h.Callable = p.str(path, v) }},
		{name: "method", fn: func(path string, v *yaml.Node) { h.Method = p.optStr(path, v) }},
		{name: "resolver", fn: func(path string, v *yaml.Node) { h.Resolver = p.optStr(path, v) }},
		{name: "initialization", fn: func(path string, v *yaml.Node) { h.Initialization = p.jsonMap(path, v) }},
	})
}

// retry reads a retry block. Keys it omits take serde's per-field defaults: retryable true,
// max_attempts 3, backoff exponential, backoff_base_ms and max_backoff_ms null.
func (p *parser) retry(path string, n *yaml.Node) RetryConfiguration {
	r := RetryConfiguration{Retryable: true, MaxAttempts: 3, Backoff: BackoffExponential}
	p.object(path, n, "retry configuration", "retry", false, []fieldSpec{
		{name: "retryable", fn: func(path string, v *yaml.Node) { r.Retryable = p.boolean(path, v) }},
		{name: "max_attempts", fn: func(path string, v *yaml.Node) { r.MaxAttempts = p.u32(path, v) }},
		{name: "backoff", fn: func(path string, v *yaml.Node) {
			r.Backoff = BackoffStrategy(p.enum(path, v, "backoff strategy", backoffStrategies))
		}},
		{name: "backoff_base_ms", fn: func(path string, v *yaml.Node) { r.BackoffBaseMs = p.optU64(path, v) }},
		{name: "max_backoff_ms", fn: func(path string, v *yaml.Node) { r.MaxBackoffMs = p.optU64(path, v) }},
	})
	return r
}

func (p *parser) events(path string, n *yaml.Node) []EventDeclaration {
	out := []EventDeclaration{}
	p.sequence(path, n, "of event declarations", func(ip string, item *yaml.Node) {
		if isNull(item) {
			p.add(ip, item, "must be a mapping (event declaration)")
			return
		}
		e := EventDeclaration{Condition: ConditionSuccess, DeliveryMode: DeliveryDurable}
		p.object(ip, item, "event declaration", "event", false, []fieldSpec{
			{name: "name", fn: func(path string, v *yaml.Node) { e.Name = p.str(path, v) }},
			{name: "description", fn: func(path string, v *yaml.Node) { e.Description = p.str(path, v) }},
			{name: "condition", fn: func(path string, v *yaml.Node) {
				e.Condition = PublicationCondition(p.enum(path, v, "publication condition", publicationConditions))
			}},
			{name: "schema", fn: func(path string, v *yaml.Node) { e.Schema = p.jsonValue(path, v) }},
			{name: "delivery_mode", fn: func(path string, v *yaml.Node) {
				e.DeliveryMode = DeliveryMode(p.enum(path, v, "delivery mode", deliveryModes))
			}},
			{name: "publisher", fn: func(path string, v *yaml.Node) { e.Publisher = p.optStr(path, v) }},
		})
		out = append(out, e)
	})
	return out
}

func (p *parser) batchConfig(path string, n *yaml.Node) *BatchConfiguration {
	b := &BatchConfiguration{FailureStrategy: FailureContinueOnFailure}
	p.object(path, n, "batch configuration", "batch_config", false, []fieldSpec{
		{name: "batch_size", fn: func(path string, v *yaml.Node) { b.BatchSize = p.u32(path, v) }},
		{name: "parallelism", fn: func(path string, v *yaml.Node) { b.Parallelism = p.u32(path, v) }},
		{name: "cursor_field", fn: func(path string, v *yaml.Node) { b.CursorField = p.str(path, v) }},
		{name: "worker_template", fn: func(path string, v *yaml.Node) { b.WorkerTemplate = p.str(path, v) }},
		{name: "failure_strategy", fn: func(path string, v *yaml.Node) {
			b.FailureStrategy = FailureStrategy(p.enum(path, v, "failure strategy", failureStrategies))
		}},
	})
	return b
}

func (p *parser) environments(path string, n *yaml.Node) map[string]EnvironmentOverride {
	out := map[string]EnvironmentOverride{}
	if n.Kind != yaml.MappingNode {
		p.add(path, n, "must be a mapping of environment name to overrides")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := p.deref(n.Content[i])
		v := p.deref(n.Content[i+1])
		if k == nil || v == nil {
			return out
		}
		if k.Kind != yaml.ScalarNode {
			p.add(path, k, "mapping keys must be strings")
			continue
		}
		ep := join(path, k.Value)
		if _, dup := out[k.Value]; dup {
			p.add(ep, k, "duplicate environment")
			continue
		}
		env := EnvironmentOverride{Steps: []StepOverride{}}
		if !isNull(v) {
			p.object(ep, v, "environment override", "environment", false, []fieldSpec{
				{name: "steps", fn: func(path string, sv *yaml.Node) { env.Steps = p.stepOverrides(path, sv) }},
			})
		}
		out[k.Value] = env
	}
	return out
}

func (p *parser) stepOverrides(path string, n *yaml.Node) []StepOverride {
	out := []StepOverride{}
	p.sequence(path, n, "of step overrides", func(ip string, item *yaml.Node) {
		if isNull(item) {
			p.add(ip, item, "must be a mapping (step override)")
			return
		}
		var o StepOverride
		p.object(ip, item, "step override", "step_override", false, []fieldSpec{
			{name: "name", fn: func(path string, v *yaml.Node) { o.Name = p.str(path, v) }},
			{name: "handler", fn: func(path string, v *yaml.Node) {
				h := &HandlerOverride{}
				p.object(path, v, "handler override", "handler_override", false, []fieldSpec{
					{name: "initialization", fn: func(path string, iv *yaml.Node) { h.Initialization = p.jsonMap(path, iv) }},
				})
				o.Handler = h
			}},
			{name: "timeout_seconds", fn: func(path string, v *yaml.Node) { o.TimeoutSeconds = p.optU32(path, v) }},
			{name: "retry", fn: func(path string, v *yaml.Node) { r := p.retry(path, v); o.Retry = &r }},
		})
		out = append(out, o)
	})
	return out
}

func (p *parser) lifecycle(path string, n *yaml.Node) *LifecycleConfig {
	l := &LifecycleConfig{StalenessAction: "dlq"}
	p.object(path, n, "lifecycle configuration", "lifecycle", false, []fieldSpec{
		{name: "max_duration_minutes", fn: func(path string, v *yaml.Node) { l.MaxDurationMinutes = p.optI32(path, v) }},
		{name: "max_waiting_for_dependencies_minutes", fn: func(path string, v *yaml.Node) { l.MaxWaitingForDependenciesMinutes = p.optI32(path, v) }},
		{name: "max_waiting_for_retry_minutes", fn: func(path string, v *yaml.Node) { l.MaxWaitingForRetryMinutes = p.optI32(path, v) }},
		{name: "max_steps_in_process_minutes", fn: func(path string, v *yaml.Node) { l.MaxStepsInProcessMinutes = p.optI32(path, v) }},
		{name: "staleness_action", fn: func(path string, v *yaml.Node) { l.StalenessAction = p.str(path, v) }},
		{name: "auto_fail_on_timeout", fn: func(path string, v *yaml.Node) { l.AutoFailOnTimeout = p.optBool(path, v) }},
		{name: "auto_dlq_on_timeout", fn: func(path string, v *yaml.Node) { l.AutoDLQOnTimeout = p.optBool(path, v) }},
	})
	return l
}
