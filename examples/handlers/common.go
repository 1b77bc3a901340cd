package exhandlers

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/handlers"
)

// error_type values tasker-core's example handlers write (they are free-form strings there, not
// the snake_case set of package handlers).
const (
	errTypeValidation = "ValidationError"
	errTypeDependency = "DependencyError"
	errTypeRetryable  = "RetryableError"
	errTypePermanent  = "PermanentError"
	errTypeInventory  = "InventoryError"
	errTypePayment    = "PaymentError"
	errTypeDecision   = "DecisionError"
)

// now is the clock for timestamps and the unix seconds in generated identifiers; tests replace it.
var now = time.Now

// fail builds a failure the way tasker-core's error_result does: message, error_code,
// error_type, retryability and an optional metadata.context.
func fail(message, errorType, code string, retryable bool, ctx map[string]any) handlers.Result {
	return handlers.Failure(message, errorType, retryable, handlers.WithCode(code), handlers.WithContext(ctx))
}

// missingDependency is the retryable DependencyError tasker-core's math handlers report when a
// parent's result is absent or not an integer.
func missingDependency(step string) handlers.Result {
	return fail("Result of "+step+" not found", errTypeDependency, "MISSING_DEPENDENCY", true,
		map[string]any{"required_step": step})
}

// rfc3339 formats t in UTC with the precision chrono's to_rfc3339 keeps.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// stepHash is a stable 64-bit hash of the step UUID and a label, the source of the identifiers
// tasker-core draws at random.
func stepHash(step *handlers.StepContext, label string) uint64 {
	h := fnv.New64a()
	id := step.StepUUID()
	h.Write(id[:])
	h.Write([]byte(label))
	return h.Sum64()
}

// stepUUIDFor is a version-5 UUID derived from the step UUID and a label (tasker-core uses v4).
func stepUUIDFor(step *handlers.StepContext, label string) uuid.UUID {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], stepHash(step, label))
	return uuid.NewSHA1(step.StepUUID(), append([]byte(label+":"), seed[:]...))
}

// ---- serde_json::Value-like access to untyped JSON ----

// decodeValue decodes raw with numbers kept as json.Number, so integers and floats stay
// distinguishable as they are in serde_json.
func decodeValue(raw json.RawMessage) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// inputValue returns a task context field as an untyped value; ok is false when it is absent.
func inputValue(step *handlers.StepContext, key string) (any, bool) {
	raw, ok := step.Input(key)
	if !ok {
		return nil, false
	}
	return decodeValue(raw)
}

// dependencyObject returns an ancestor's output as an object; ok is false when the ancestor is
// absent or its output is not an object.
func dependencyObject(step *handlers.StepContext, name string) (map[string]any, bool) {
	raw, ok := step.DependencyValue(name)
	if !ok {
		return nil, false
	}
	v, ok := decodeValue(raw)
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// inputInt64 reads an integer context field the way serde reads an i64: a missing, null,
// fractional or out-of-range value is absent.
func inputInt64(step *handlers.StepContext, key string) (int64, bool) {
	v, ok := inputValue(step, key)
	if !ok {
		return 0, false
	}
	return asInt64(v)
}

// asInt64 is serde's as_i64: an integer literal in int64 range.
func asInt64(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

// asUint64 is serde's as_u64: a non-negative integer literal in uint64 range.
func asUint64(v any) (uint64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	u, err := strconv.ParseUint(string(n), 10, 64)
	return u, err == nil
}

// asFloat64 is serde's as_f64: any number.
func asFloat64(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// asString is serde's as_str.
func asString(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

// field returns obj[key] when obj is an object.
func field(obj any, key string) any {
	if m, ok := obj.(map[string]any); ok {
		return m[key]
	}
	return nil
}

// inputString is a string context field, or def when absent or not a string.
func inputString(step *handlers.StepContext, key, def string) string {
	if v, ok := inputValue(step, key); ok {
		if s, ok := asString(v); ok {
			return s
		}
	}
	return def
}

// configInt is an integer handler.initialization entry, or def.
func configInt(step *handlers.StepContext, key string, def int64) int64 {
	if raw, ok := step.Config(key); ok {
		if v, ok := decodeValue(raw); ok {
			if i, ok := asInt64(v); ok {
				return i
			}
		}
	}
	return def
}

// configFloat is a numeric handler.initialization entry, or def.
func configFloat(step *handlers.StepContext, key string, def float64) float64 {
	if raw, ok := step.Config(key); ok {
		if v, ok := decodeValue(raw); ok {
			if f, ok := asFloat64(v); ok {
				return f
			}
		}
	}
	return def
}

// configString is a string handler.initialization entry, or def.
func configString(step *handlers.StepContext, key, def string) string {
	if raw, ok := step.Config(key); ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return def
}
