package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// ResultFormatError reports a StepExecutionResult JSON value that tasker-core's serde parse would
// reject. Path is a dotted key path such as "orchestration_metadata.headers".
type ResultFormatError struct {
	Path   string
	Reason string
}

// Error names the path and the reason.
func (e *ResultFormatError) Error() string {
	return fmt.Sprintf("protocol: step execution result: %s: %s", e.Path, e.Reason)
}

// DecodeStepExecutionResultStrict parses data and rejects every shape the Rust orchestrator's
// strict serde parse rejects (wrong JSON types, null where serde wants a value, error without
// message/retryable, orchestration_metadata without headers/custom, bad backoff hints). A value
// that passes is safe to write to workflow_steps.results. Failures are *ResultFormatError.
func DecodeStepExecutionResultStrict(data []byte) (StepExecutionResult, error) {
	if err := ValidateStepExecutionResultJSON(data); err != nil {
		return StepExecutionResult{}, err
	}
	var r StepExecutionResult
	if err := json.Unmarshal(data, &r); err != nil {
		return StepExecutionResult{}, &ResultFormatError{Path: "$", Reason: err.Error()}
	}
	return r, nil
}

// ValidateStepExecutionResultJSON checks data against the rules of DecodeStepExecutionResultStrict
// without decoding it.
func ValidateStepExecutionResultJSON(data []byte) error {
	obj, err := object(data, "$")
	if err != nil {
		return err
	}
	checks := []struct {
		key string
		fn  func(json.RawMessage, string) error
	}{
		{"step_uuid", checkUUID},
		{"success", checkBool},
		{"metadata", checkMetadata},
		{"status", checkString},
		{"error", nullOr(checkError)},
		{"orchestration_metadata", nullOr(checkOrchestrationMetadata)},
	}
	for _, c := range checks {
		if v, ok := obj[c.key]; ok {
			if err := c.fn(v, c.key); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkMetadata(v json.RawMessage, path string) error {
	obj, err := object(v, path)
	if err != nil {
		return err
	}
	checks := map[string]func(json.RawMessage, string) error{
		"execution_time_ms": checkInt64,
		"handler_version":   nullOr(checkString),
		"retryable":         checkBool,
		"completed_at":      checkTime,
		"worker_id":         nullOr(checkString),
		"worker_hostname":   nullOr(checkString),
		"started_at":        nullOr(checkTime),
		"custom":            checkObject,
		"error_code":        nullOr(checkString),
		"error_type":        nullOr(checkString),
		"context":           checkObject,
	}
	return checkFields(obj, path, checks, nil)
}

func checkError(v json.RawMessage, path string) error {
	obj, err := object(v, path)
	if err != nil {
		return err
	}
	checks := map[string]func(json.RawMessage, string) error{
		"message":     checkString,
		"error_type":  nullOr(checkString),
		"backtrace":   nullOr(checkStringArray),
		"retryable":   checkBool,
		"status_code": nullOr(checkUint16),
		"context":     checkObject,
	}
	return checkFields(obj, path, checks, []string{"message", "retryable"})
}

func checkOrchestrationMetadata(v json.RawMessage, path string) error {
	obj, err := object(v, path)
	if err != nil {
		return err
	}
	checks := map[string]func(json.RawMessage, string) error{
		"headers":       checkStringMap,
		"error_context": nullOr(checkString),
		"backoff_hint":  nullOr(checkBackoffHint),
		"custom":        checkObject,
	}
	return checkFields(obj, path, checks, []string{"headers", "custom"})
}

func checkBackoffHint(v json.RawMessage, path string) error {
	obj, err := object(v, path)
	if err != nil {
		return err
	}
	checks := map[string]func(json.RawMessage, string) error{
		"backoff_type":  checkBackoffType,
		"delay_seconds": checkUint32,
		"context":       nullOr(checkString),
	}
	return checkFields(obj, path, checks, []string{"backoff_type", "delay_seconds"})
}

func checkFields(obj map[string]json.RawMessage, path string, checks map[string]func(json.RawMessage, string) error, required []string) error {
	for _, key := range required {
		if _, ok := obj[key]; !ok {
			return &ResultFormatError{Path: path, Reason: "missing field " + strconv.Quote(key)}
		}
	}
	for key, fn := range checks {
		if v, ok := obj[key]; ok {
			if err := fn(v, path+"."+key); err != nil {
				return err
			}
		}
	}
	return nil
}

func nullOr(fn func(json.RawMessage, string) error) func(json.RawMessage, string) error {
	return func(v json.RawMessage, path string) error {
		if isNull(v) {
			return nil
		}
		return fn(v, path)
	}
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

func object(v json.RawMessage, path string) (map[string]json.RawMessage, error) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 || t[0] != '{' {
		return nil, &ResultFormatError{Path: path, Reason: "want an object, got " + truncate(t, 40)}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(t, &obj); err != nil {
		return nil, &ResultFormatError{Path: path, Reason: err.Error()}
	}
	return obj, nil
}

func checkObject(v json.RawMessage, path string) error {
	_, err := object(v, path)
	return err
}

func checkString(v json.RawMessage, path string) error {
	var s string
	if isNull(v) || json.Unmarshal(v, &s) != nil {
		return &ResultFormatError{Path: path, Reason: "want a string, got " + truncate(bytes.TrimSpace(v), 40)}
	}
	return nil
}

func checkBool(v json.RawMessage, path string) error {
	var b bool
	if isNull(v) || json.Unmarshal(v, &b) != nil {
		return &ResultFormatError{Path: path, Reason: "want a boolean, got " + truncate(bytes.TrimSpace(v), 40)}
	}
	return nil
}

func checkUUID(v json.RawMessage, path string) error {
	if err := checkString(v, path); err != nil {
		return err
	}
	var s string
	_ = json.Unmarshal(v, &s)
	if _, err := uuid.Parse(s); err != nil {
		return &ResultFormatError{Path: path, Reason: err.Error()}
	}
	return nil
}

func checkTime(v json.RawMessage, path string) error {
	if err := checkString(v, path); err != nil {
		return err
	}
	var s string
	_ = json.Unmarshal(v, &s)
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return &ResultFormatError{Path: path, Reason: "want an RFC 3339 timestamp: " + err.Error()}
	}
	return nil
}

// integer parses a JSON number that has no fraction or exponent, as serde_json requires for
// integer fields.
func integer(v json.RawMessage, path string, bits int, unsigned bool) error {
	t := bytes.TrimSpace(v)
	fail := &ResultFormatError{Path: path, Reason: "want an integer, got " + truncate(t, 40)}
	if len(t) == 0 || bytes.ContainsAny(t, ".eE\"") {
		return fail
	}
	var err error
	if unsigned {
		_, err = strconv.ParseUint(string(t), 10, bits)
	} else {
		_, err = strconv.ParseInt(string(t), 10, bits)
	}
	if err != nil {
		return fail
	}
	return nil
}

func checkInt64(v json.RawMessage, path string) error  { return integer(v, path, 64, false) }
func checkUint16(v json.RawMessage, path string) error { return integer(v, path, 16, true) }
func checkUint32(v json.RawMessage, path string) error { return integer(v, path, 32, true) }

func checkStringArray(v json.RawMessage, path string) error {
	var items []json.RawMessage
	t := bytes.TrimSpace(v)
	if len(t) == 0 || t[0] != '[' || json.Unmarshal(t, &items) != nil {
		return &ResultFormatError{Path: path, Reason: "want an array of strings"}
	}
	for i, it := range items {
		if err := checkString(it, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

func checkStringMap(v json.RawMessage, path string) error {
	obj, err := object(v, path)
	if err != nil {
		return err
	}
	for k, val := range obj {
		if err := checkString(val, path+"."+k); err != nil {
			return err
		}
	}
	return nil
}

func checkBackoffType(v json.RawMessage, path string) error {
	var s string
	if isNull(v) || json.Unmarshal(v, &s) != nil {
		return &ResultFormatError{Path: path, Reason: "want a backoff type string"}
	}
	switch BackoffHintType(s) {
	case BackoffServerRequested, BackoffRateLimit, BackoffServiceUnavailable, BackoffCustom:
		return nil
	}
	return &ResultFormatError{Path: path, Reason: "unknown backoff type " + strconv.Quote(s)}
}
