package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
)

// decodeTOML parses data and applies every key of the table found in it to c, reporting unknown
// keys, keys used as tables (or tables used as values) and bad values, all at once.
func decodeTOML(c *Config, data string, getenv func(string) string) error {
	var raw map[string]any
	md, err := toml.Decode(data, &raw)
	if err != nil {
		return &Error{Key: c.File, Message: err.Error()}
	}
	var (
		errs     []error
		skip     []string // unknown tables: their keys are not reported again
		commonVT *time.Duration
		jitterOn *bool
	)
	for _, k := range md.Keys() {
		key := k.String()
		if hasPrefixKey(key, skip) {
			continue
		}
		val := lookupRaw(raw, k)
		if _, isTable := val.(map[string]any); isTable {
			switch {
			case tableDir[key]:
			case byKey[key] != nil:
				errs = append(errs, &Error{Key: key, Message: "expected a value, got a table"})
				skip = append(skip, key)
			default:
				errs = append(errs, &Error{Key: key, Message: "unknown table" + suggest(key)})
				skip = append(skip, key)
			}
			continue
		}
		e := byKey[key]
		if e == nil {
			msg := "unknown key" + suggest(key)
			if tableDir[key] {
				msg = "is a table, not a value"
			}
			errs = append(errs, &Error{Key: key, Message: msg})
			skip = append(skip, key)
			continue
		}
		if key == keyCommonVT {
			d, err := convert(e.kind, val, getenv)
			if err != nil {
				errs = append(errs, &Error{Key: key, Message: err.Error()})
				continue
			}
			v := d.(time.Duration)
			commonVT = &v
			c.sources[key] = fromFileMark
			continue
		}
		if key == keyJitterEnabled {
			b, err := convert(e.kind, val, getenv)
			if err != nil {
				errs = append(errs, &Error{Key: key, Message: err.Error()})
				continue
			}
			on := b.(bool)
			jitterOn = &on
			c.sources[key] = fromFileMark
			continue
		}
		if e.kind == kAPIKeys {
			skip = append(skip, key) // its tables' fields are checked by toAPIKeys
		}
		if err := e.setValue(c, val, getenv); err != nil {
			errs = append(errs, &Error{Key: key, Message: err.Error()})
			continue
		}
		c.sources[key] = fromFileMark
	}
	if commonVT != nil {
		if _, set := c.sources[keyWorkerVT]; !set {
			c.Worker.VisibilityTimeout = *commonVT
			c.via[keyWorkerVT] = keyCommonVT
		}
		if _, set := c.sources[keyOrchVT]; !set {
			c.Orchestration.VisibilityTimeout = *commonVT
			c.via[keyOrchVT] = keyCommonVT
		}
	}
	// jitter_enabled = false is the orchestrator's NoJitter, applied after the whole file so that
	// the order of the two keys does not matter. An out-of-range jitter_max_percentage is kept
	// for Validate to report.
	if pct := c.Orchestration.Backoff.JitterPercent; jitterOn != nil && !*jitterOn && pct >= 0 && pct <= 1 {
		c.Orchestration.Backoff.JitterPercent = orchestration.NoJitter
	}
	return errors.Join(errs...)
}

func lookupRaw(m map[string]any, k toml.Key) any {
	var cur any = m
	for _, part := range k {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[part]
	}
	return cur
}

func hasPrefixKey(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// setValue converts raw (a TOML value, or a string from the environment) and stores it in the
// entry's field. getenv expands placeholders in TOML strings; nil means raw is not expanded.
func (e *entry) setValue(c *Config, raw any, getenv func(string) string) error {
	v, err := convert(e.kind, raw, getenv)
	if err != nil {
		return err
	}
	fieldOf(c, e.field).Set(reflect.ValueOf(v))
	return nil
}

// convert turns a TOML value (or an environment string) into the Go value of kind k. Strings
// are accepted for every kind, after placeholder substitution, so that numbers and booleans can
// come from ${VAR:-default} as well.
func convert(k kind, raw any, getenv func(string) string) (any, error) {
	if s, ok := raw.(string); ok && getenv != nil {
		x, err := expand(s, getenv)
		if err != nil {
			return nil, err
		}
		raw = x
	}
	switch k {
	case kString:
		s, ok := raw.(string)
		if !ok {
			return nil, typeErr("a string", raw)
		}
		return s, nil
	case kStrings:
		switch v := raw.(type) {
		case string:
			return splitList(v), nil
		case []any:
			out := make([]string, 0, len(v))
			for i, item := range v {
				s, ok := item.(string)
				if !ok {
					return nil, fmt.Errorf("element %d: %w", i, typeErr("a string", item))
				}
				if getenv != nil {
					x, err := expand(s, getenv)
					if err != nil {
						return nil, fmt.Errorf("element %d: %w", i, err)
					}
					s = x
				}
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
			return out, nil
		}
		return nil, typeErr("an array of strings", raw)
	case kInt:
		return toInt(raw)
	case kBool:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("%q is not true or false", v)
			}
			return b, nil
		}
		return nil, typeErr("true or false", raw)
	case kFloat:
		f, err := toFloat(raw)
		if err != nil {
			return nil, err
		}
		return f, nil
	case kMillis:
		return toDuration(raw, time.Millisecond, "milliseconds")
	case kSeconds:
		return toDuration(raw, time.Second, "seconds")
	case kSecondsList:
		list, ok := raw.([]any)
		if !ok {
			if s, isStr := raw.(string); isStr {
				for _, p := range splitList(s) {
					list = append(list, p)
				}
			} else {
				return nil, typeErr("an array of seconds", raw)
			}
		}
		if len(list) == 0 {
			return nil, errors.New("must hold at least one value")
		}
		for i, item := range list[1:] { // only the first is used, but all must be numbers
			if _, err := toDuration(item, time.Second, "seconds"); err != nil {
				return nil, fmt.Errorf("element %d: %w", i+1, err)
			}
		}
		return toDuration(list[0], time.Second, "seconds")
	case kAPIKeys:
		return toAPIKeys(raw, getenv)
	case kUUID:
		s, ok := raw.(string)
		if !ok {
			return nil, typeErr("a UUID string", raw)
		}
		if strings.TrimSpace(s) == "" {
			return uuid.Nil, nil
		}
		id, err := uuid.Parse(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not a UUID", s)
		}
		return id, nil
	}
	return nil, fmt.Errorf("internal: unknown kind %d", k)
}

func toInt(raw any) (int, error) {
	switch v := raw.(type) {
	case int64:
		if v < math.MinInt32 || v > math.MaxInt32 {
			return 0, fmt.Errorf("%d is out of range", v)
		}
		return int(v), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", v)
		}
		return toInt(int64(n))
	case float64:
		return 0, fmt.Errorf("%v is not a whole number", v)
	}
	return 0, typeErr("a whole number", raw)
}

func toFloat(raw any) (float64, error) {
	var f float64
	switch v := raw.(type) {
	case float64:
		f = v
	case int64:
		f = float64(v)
	case string:
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", v)
		}
		f = x
	default:
		return 0, typeErr("a number", raw)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%v is not a finite number", f)
	}
	return f, nil
}

// maxDurationUnits keeps a converted duration far from int64 overflow (about 31 years).
const maxDurationSeconds = 1e9

func toDuration(raw any, unit time.Duration, unitName string) (time.Duration, error) {
	f, err := toFloat(raw)
	if err != nil {
		return 0, fmt.Errorf("%w (%s)", err, unitName)
	}
	if math.Abs(f*unit.Seconds()) > maxDurationSeconds {
		return 0, fmt.Errorf("%v %s is too large", f, unitName)
	}
	return time.Duration(math.Round(f * float64(unit))), nil
}

func typeErr(want string, got any) error {
	switch v := got.(type) {
	case map[string]any:
		return fmt.Errorf("expected %s, got a table", want)
	case []any:
		return fmt.Errorf("expected %s, got an array", want)
	case string:
		return fmt.Errorf("expected %s, got the string %q", want, v)
	case nil:
		return fmt.Errorf("expected %s", want)
	}
	return fmt.Errorf("expected %s, got %v", want, got)
}

// expand substitutes ${VAR} and ${VAR:-default} from the environment, as tasker-core does in
// its configuration files. ${VAR:-default} uses default when VAR is unset or empty; ${VAR}
// requires VAR to be set. "$" not followed by "{" is kept as it is.
func expand(s string, getenv func(string) string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated placeholder in %q", s)
		}
		inner := rest[:j]
		name, def, hasDef := strings.Cut(inner, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("bad placeholder ${%s}: %q is not a variable name", inner, name)
		}
		v := getenv(name)
		switch {
		case v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("${%s}: %s is not set and the placeholder has no default", name, name)
		}
		s = rest[j+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// suggest proposes the closest known key or table for an unknown one.
func suggest(key string) string {
	best, bestD := "", 4
	try := func(cand string) {
		if d := editDistance(key, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	for _, k := range candidates {
		try(k)
	}
	if best == "" || bestD >= 4 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
