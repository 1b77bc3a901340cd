package orchestration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/protocol"
)

// oversizedRequest is an encoded task request of at least n bytes, almost all of it context.
func oversizedRequest(n int) []byte {
	var b bytes.Buffer
	b.Grow(n + 200)
	b.WriteString(`{"name":"sizes","namespace":"limits","version":"1.0.0","context":{"items":[`)
	for b.Len() < n {
		b.WriteString(`{"id":12345,"label":"an item of the oversized request"},`)
	}
	b.WriteString(`{}]}}`)
	return b.Bytes()
}

// endlessRequest is a reader of an endless task request that counts the bytes read from it.
type endlessRequest struct {
	head bool
	n    int64
}

func (r *endlessRequest) Read(p []byte) (int, error) {
	if !r.head {
		r.head = true
		n := copy(p, `{"name":"sizes","namespace":"limits","context":{"blob":"`)
		r.n += int64(n)
		return n, nil
	}
	for i := range p {
		p[i] = 'x'
	}
	r.n += int64(len(p))
	return len(p), nil
}

// TestOversizedTaskRequestRefusedUnparsed: every way a task request enters (encoded bytes,
// json.Unmarshal, a stream, the Go API's context) refuses one over protocol.MaxTaskRequestBytes
// with a *ValidationError that matches protocol.ErrTooLarge and names the size and the limit.
func TestOversizedTaskRequestRefusedUnparsed(t *testing.T) {
	data := oversizedRequest(protocol.MaxTaskRequestBytes + 1)
	want := fmt.Sprintf("task request is %d bytes; the limit is %d", len(data), protocol.MaxTaskRequestBytes)
	check := func(what string, err error, want string) {
		t.Helper()
		var ve *ValidationError
		var se *protocol.SizeError
		if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidRequest) || !errors.As(err, &se) || !errors.Is(err, protocol.ErrTooLarge) {
			t.Errorf("%s: %T %v, want a *ValidationError with a *protocol.SizeError", what, err, err)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q", what, err, want)
		}
	}

	_, err := DecodeTaskRequest(data)
	check("DecodeTaskRequest", err, want)
	var req TaskRequest
	check("json.Unmarshal", json.Unmarshal(data, &req), want)

	r := &endlessRequest{}
	_, err = ReadTaskRequest(r)
	check("ReadTaskRequest", err, fmt.Sprintf("task request is more than %d bytes; the limit is %d", protocol.MaxTaskRequestBytes, protocol.MaxTaskRequestBytes))
	if r.n > protocol.MaxTaskRequestBytes+1 {
		t.Errorf("ReadTaskRequest read %d bytes of an endless stream", r.n)
	}

	data = oversizedRequest(protocol.MaxTaskRequestBytes + 200)
	ctx := data[bytes.Index(data, []byte(`{"items"`)) : len(data)-1]
	_, err = normalizeRequest(TaskRequest{Name: "sizes", Namespace: "limits", Context: ctx})
	check("normalizeRequest", err, fmt.Sprintf("task context is %d bytes; the limit is %d", len(ctx), protocol.MaxTaskRequestBytes))

	// Within the limit the same shape decodes, and is then judged by the JSON limits.
	small := oversizedRequest(protocol.MaxTaskRequestBytes - 200)
	req, err = DecodeTaskRequest(small)
	if err != nil || req.Name != "sizes" {
		t.Fatalf("DecodeTaskRequest of %d bytes: %v", len(small), err)
	}
	if _, err := normalizeRequest(req); err == nil || errors.Is(err, protocol.ErrTooLarge) {
		t.Errorf("a %d-byte context: %v, want refused by the JSON limits", len(req.Context), err)
	}
	if _, err := DecodeTaskRequest([]byte(`{"name": `)); err == nil || errors.Is(err, protocol.ErrTooLarge) {
		t.Errorf("truncated JSON: %v", err)
	}
}

// BenchmarkOversizedRequest measures refusing a 50 MB task request: decoding it from bytes, and
// creating a task from a request whose context is 50 MB (the part of CreateTask before any
// database access).
func BenchmarkOversizedRequest(b *testing.B) {
	data := oversizedRequest(50 << 20)
	ctx := json.RawMessage(data[bytes.Index(data, []byte(`{"items"`)) : len(data)-1])
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeTaskRequest(data); !errors.Is(err, protocol.ErrTooLarge) {
				b.Fatal(err)
			}
		}
	})
	b.Run("create", func(b *testing.B) {
		b.SetBytes(int64(len(ctx)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := normalizeRequest(TaskRequest{Name: "sizes", Namespace: "limits", Context: ctx}); !errors.Is(err, protocol.ErrTooLarge) {
				b.Fatal(err)
			}
		}
	})
}
