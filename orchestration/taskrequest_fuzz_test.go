package orchestration

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzTaskRequestJSON decodes arbitrary JSON as a TaskRequest (the body of POST /v1/tasks) and
// checks that decoding never panics, that an accepted request survives MarshalJSON and decoding
// again, and that request validation either reports field problems or yields a context that is
// canonical JSON within tasker-core's limits.
func FuzzTaskRequestJSON(f *testing.F) {
	f.Add([]byte(`{"name":"mathematical_sequence","namespace":"rust_e2e_linear","version":"1.0.0","context":{"even_number":6},"initiator":"me","source_system":"test","reason":"why","tags":["a"],"priority":5}`))
	f.Add([]byte(`{"name":"n","namespace":"ns","context":null,"requested_at":"2026-03-21T21:16:08.123","correlation_id":"01a207f4-1f2e-7978-9c2d-f9c152ed1467"}`))
	f.Add([]byte(`{"name":"n","namespace":"ns","context":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":1}}}}}}}}}}}}`))
	f.Add([]byte(`{"name":"n","namespace":"ns","requested_at":"2026-03-21T21:16:08+02:00","idempotency_key":"k","options":{"x":[1,2]}}`))
	f.Add([]byte(`{"name":"x'; DROP TABLE tasker.tasks; --","namespace":"ns","priority":101,"context":"just a string"}`))
	f.Add([]byte(`{"context":{"n":1e400,"s":"\u0000"},"tags":[null]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req TaskRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return
		}
		out, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("MarshalJSON of a decoded request: %v", err)
		}
		var back TaskRequest
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("a marshalled request does not decode: %v\n%s", err, out)
		}
		if !back.RequestedAt.Equal(req.RequestedAt) || back.Name != req.Name || back.Namespace != req.Namespace ||
			back.Priority != req.Priority || !sameJSON(back.Context, req.Context) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, back)
		}

		n, err := normalizeRequest(req)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 || !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("validation error is not a non-empty *ValidationError: %T %v", err, err)
			}
			return
		}
		if len(n.context) > MaxJSONBytes {
			t.Fatalf("accepted a %d-byte context", len(n.context))
		}
		v, err := decodeJSON(n.context)
		if err != nil {
			t.Fatalf("normalized context is not JSON: %v", err)
		}
		canon, err := canonicalJSON(v)
		if err != nil || !bytes.Equal(canon, n.context) {
			t.Fatalf("normalized context is not canonical: %s vs %s (%v)", n.context, canon, err)
		}
	})
}

// sameJSON compares two optional JSON values by meaning (MarshalJSON compacts raw JSON and
// escapes HTML characters); absent and null are the same.
func sameJSON(a, b json.RawMessage) bool {
	blank := func(r json.RawMessage) bool { t := bytes.TrimSpace(r); return len(t) == 0 || string(t) == "null" }
	if blank(a) || blank(b) {
		return blank(a) && blank(b)
	}
	va, erra := decodeJSON(a)
	vb, errb := decodeJSON(b)
	return erra == nil && errb == nil && reflect.DeepEqual(va, vb)
}
