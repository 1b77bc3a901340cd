package orchestration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Limits of tasker-core's validate_jsonb_input, applied to a task's context and tags.
const (
	MaxJSONBytes        = 1024 * 1024 // serialized (compact) size
	MaxJSONDepth        = 10          // the top-level value is depth 0
	MaxJSONEntries      = 1000        // keys per object, items per array
	MaxJSONStringLength = 10000       // bytes per string and per object key
)

// decodeJSON parses raw into a generic value with numbers kept as json.Number, rejecting
// trailing data.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the top-level value")
	}
	return v, nil
}

// canonicalJSON encodes v compactly with object keys sorted (recursively), no HTML escaping and
// numbers exactly as written: the form the identity hash is computed over.
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps are encoded with sorted keys
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// checkJSONLimits applies tasker-core's validate_jsonb_input limits to v (encoded as canonical)
// and returns the first violation as a problem of field (e.g. "context.items[3]").
func checkJSONLimits(field string, v any, canonical []byte) *FieldProblem {
	if len(canonical) > MaxJSONBytes {
		return &FieldProblem{Field: field, Message: fmt.Sprintf("JSON payload too large: %d bytes (max %d)", len(canonical), MaxJSONBytes)}
	}
	return walkJSONLimits(field, v, 0)
}

func walkJSONLimits(path string, v any, depth int) *FieldProblem {
	if depth > MaxJSONDepth {
		return &FieldProblem{Field: path, Message: fmt.Sprintf("JSON nesting too deep: %d (max %d)", depth, MaxJSONDepth)}
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) > MaxJSONEntries {
			return &FieldProblem{Field: path, Message: fmt.Sprintf("too many JSON keys: %d (max %d)", len(x), MaxJSONEntries)}
		}
		for k, val := range x {
			if len(k) > MaxJSONStringLength {
				return &FieldProblem{Field: path, Message: fmt.Sprintf("JSON key too long: %d bytes (max %d)", len(k), MaxJSONStringLength)}
			}
			if strings.ContainsRune(k, 0) {
				return &FieldProblem{Field: path, Message: "JSON key contains U+0000, which PostgreSQL jsonb cannot store"}
			}
			if p := walkJSONLimits(joinPath(path, k), val, depth+1); p != nil {
				return p
			}
		}
	case []any:
		if len(x) > MaxJSONEntries {
			return &FieldProblem{Field: path, Message: fmt.Sprintf("JSON array too large: %d items (max %d)", len(x), MaxJSONEntries)}
		}
		for i, item := range x {
			if p := walkJSONLimits(path+"["+strconv.Itoa(i)+"]", item, depth+1); p != nil {
				return p
			}
		}
	case string:
		if len(x) > MaxJSONStringLength {
			return &FieldProblem{Field: path, Message: fmt.Sprintf("JSON string too long: %d bytes (max %d)", len(x), MaxJSONStringLength)}
		}
		if strings.ContainsRune(x, 0) {
			return &FieldProblem{Field: path, Message: "JSON string contains U+0000, which PostgreSQL jsonb cannot store"}
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	if key == "" {
		return path
	}
	return path + "." + key
}

// Identity hash inputs are tagged so that a context and an idempotency key can never produce
// the same bytes.
const (
	identityTagContext = 'c'
	identityTagKey     = 'k'
	identityTagUnique  = 'u'
)

// identityHash is the tasks.identity_hash of tasker-go: lowercase hex SHA-256 over the named
// task's 16 uuid bytes, a one-byte tag and the payload (the canonical context JSON, an
// idempotency key, or a fresh uuid for always_unique).
//
// tasker-core computes this column with Rust's DefaultHasher (SipHash-1-3 with Rust's framing,
// printed as unpadded u64 hex), which is not stable across Rust releases; the two hashes never
// coincide, so deduplication is not shared between Go and Rust orchestrators on one database
// (each still deduplicates its own requests; the column's unique index guards both).
func identityHash(namedTask uuid.UUID, tag byte, payload []byte) string {
	h := sha256.New()
	h.Write(namedTask[:])
	h.Write([]byte{tag})
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil))
}
