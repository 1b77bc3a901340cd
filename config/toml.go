package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/uuid"

	"github.com/tasker-go/tasker/orchestration"
)

// parseTOML parses one file; errors name the file.
func parseTOML(name, data string) (map[string]any, error) {
	raw := map[string]any{}
	if _, err := toml.Decode(data, &raw); err != nil {
		return nil, &Error{Key: name, Message: err.Error()}
	}
	return raw, nil
}

// mergeTOML layers src over dst as tasker-core merges base and environment files: tables merge
// key by key, any other value (arrays included) of src replaces dst's.
func mergeTOML(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeTOML(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// decoder applies a parsed (merged) file to a Config.
type decoder struct {
	c        *Config
	getenv   func(string) string
	errs     []error
	ignored  []string
	docs     bool           // a _docs table was seen
	pending  map[*entry]any // fallback keys, applied after the walk
	commonVT *time.Duration
	jitterOn *bool
	pgmqURL  string
}

// decodeTOML applies every key of raw to c and returns the tasker-core keys it ignored. Unknown
// keys, keys used as tables (or tables used as values) and bad values are reported all at once;
// keys of tasker-core's schema that have no meaning here are accepted and listed instead.
func decodeTOML(c *Config, raw map[string]any, getenv func(string) string) ([]string, error) {
	d := &decoder{c: c, getenv: getenv, pending: map[*entry]any{}}
	d.walk("", raw)
	d.finish()
	if d.docs {
		d.ignored = append(d.ignored, "*._docs (documentation tables)")
	}
	return groupIgnored(d.ignored), errors.Join(d.errs...)
}

// groupIgnored writes the ignored keys of a table that holds none of ours as "table.*" (its
// outermost such table), sorted and without duplicates.
func groupIgnored(keys []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		parts := strings.Split(strings.TrimSuffix(k, ".*"), ".")
		if strings.ContainsAny(k, " ") || strings.HasPrefix(k, "*") { // annotated entries stay as they are
			parts = nil
		}
		for j := 1; j < len(parts); j++ {
			if p := strings.Join(parts[:j], "."); !tableDir[p] {
				k = p + ".*"
				break
			}
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (d *decoder) fail(key, msg string) { d.errs = append(d.errs, &Error{Key: key, Message: msg}) }

func (d *decoder) walk(prefix string, m map[string]any) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := name
		if strings.ContainsAny(name, ". \"") {
			key = strconv.Quote(name) // a quoted key holding dots is one key: it matches none of ours
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		val := m[name]
		if sub, isTable := val.(map[string]any); isTable {
			switch {
			case name == "_docs":
				d.docs = true
			case tableDir[key] || tcTables[key]:
				d.walk(key, sub)
			case byKey[key] != nil:
				d.fail(key, "expected a value, got a table")
			case foreign(key):
				d.ignored = append(d.ignored, key+".*")
			default:
				d.fail(key, "unknown table"+suggest(key))
			}
			continue
		}
		e := byKey[key]
		switch {
		case e != nil:
			d.apply(e, val)
		case tableDir[key] || tcTables[key]:
			d.fail(key, "is a table, not a value")
		case tcKeys[key] || foreign(key):
			d.ignored = append(d.ignored, key)
		default:
			d.fail(key, "unknown key"+suggest(key))
		}
	}
}

// foreign reports whether key lies in a section only tasker-core has (its nearest known
// enclosing table is not one of ours): such keys are ignored, while unknown keys in our
// sections are typos.
func foreign(key string) bool {
	for p := parentKey(key); p != ""; p = parentKey(p) {
		if tableDir[p] {
			return false
		}
		if tcTables[p] {
			return true
		}
	}
	return false
}

func parentKey(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

func (d *decoder) apply(e *entry, val any) {
	key, c := e.Key, d.c
	conv := func() (any, bool) {
		v, err := convert(e.kind, val, d.getenv)
		if err != nil {
			d.fail(key, err.Error())
			return nil, false
		}
		c.sources[key] = fromFileMark
		return v, true
	}
	switch {
	case e.fixed != nil:
		if v, ok := conv(); ok && !reflect.DeepEqual(v, e.fixed) {
			d.fail(key, fmt.Sprintf("%v is not supported: tasker-go uses %v", v, e.fixed))
		}
	case e.fallbackOf != "":
		if v, ok := conv(); ok {
			d.pending[e] = v
		}
	case key == keyCommonVT:
		if v, ok := conv(); ok {
			vt := v.(time.Duration)
			d.commonVT = &vt
		}
	case key == keyJitterEnabled:
		if v, ok := conv(); ok {
			on := v.(bool)
			d.jitterOn = &on
		}
	case key == keyPGMQURL:
		if v, ok := conv(); ok {
			d.pgmqURL = v.(string)
		}
	case key == keyWorkerID:
		v, ok := conv()
		if !ok {
			return
		}
		if id := v.(string); !strings.HasPrefix(id, "worker_") && uuid.Validate(id) != nil {
			// tasker-core's worker_id is a display name ("test-worker-001"); ours is the uuid
			// recorded in transitions, so such a name keeps the generated id. A worker_ id
			// that is not worker_<uuid> is left to Validate to reject.
			delete(c.sources, key)
			d.ignored = append(d.ignored, fmt.Sprintf("%s (%q is not worker_<uuid>: a new id is used)", key, v))
			return
		}
		fieldOf(c, e.field).Set(reflect.ValueOf(v))
	default:
		if v, ok := conv(); ok {
			fieldOf(c, e.field).Set(reflect.ValueOf(v))
		}
	}
}

// finish applies what depends on several keys: fallback keys whose primary key is not set, the
// common visibility timeout, the jitter switch and the PGMQ database check.
func (d *decoder) finish() {
	c := d.c
	for i := range table { // table order: the first fallback found wins
		e := &table[i]
		v, ok := d.pending[e]
		if !ok {
			continue
		}
		if _, set := c.sources[e.fallbackOf]; set || c.via[e.fallbackOf] != "" {
			continue
		}
		fieldOf(c, e.field).Set(reflect.ValueOf(v))
		c.via[e.fallbackOf] = e.Key
	}
	if d.commonVT != nil {
		if _, set := c.sources[keyWorkerVT]; !set {
			c.Worker.VisibilityTimeout = *d.commonVT
			c.via[keyWorkerVT] = keyCommonVT
		}
		if _, set := c.sources[keyOrchVT]; !set {
			c.Orchestration.VisibilityTimeout = *d.commonVT
			c.via[keyOrchVT] = keyCommonVT
		}
	}
	// jitter_enabled = false is the orchestrator's NoJitter, applied after the whole file so that
	// the order of the two keys does not matter. An out-of-range jitter_max_percentage is kept
	// for Validate to report.
	if pct := c.Orchestration.Backoff.JitterPercent; d.jitterOn != nil && !*d.jitterOn && pct >= 0 && pct <= 1 {
		c.Orchestration.Backoff.JitterPercent = orchestration.NoJitter
	}
	if u := strings.TrimSpace(d.pgmqURL); u != "" && u != c.Database.URL {
		d.fail(keyPGMQURL, "a separate PGMQ database is not supported: tasker-go reads its queues from "+keyDatabaseURL)
	}
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
	case kMinutes:
		return toDuration(raw, time.Minute, "minutes")
	case kHours:
		return toDuration(raw, time.Hour, "hours")
	case kNotBool:
		b, err := convert(kBool, raw, nil)
		if err != nil {
			return nil, err
		}
		return !b.(bool), nil
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
