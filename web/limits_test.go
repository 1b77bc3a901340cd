package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/protocol"
)

// endless yields 'x' for ever and counts the bytes read from it.
type endless struct{ n int64 }

func (r *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func (r *endless) Close() error { return nil }

// TestBodyOverLimitRefusedUnread: a request declaring a body over the limit is answered 413 with
// a JSON error body naming the size and the limit, and none of its body is read.
func TestBodyOverLimitRefusedUnread(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		limit int64
	}{
		{"default", Config{}, protocol.MaxTaskRequestBytes},
		{"configured", Config{MaxBodyBytes: 1000}, 1000},
	} {
		body := &endless{}
		req := httptest.NewRequest(http.MethodPost, "/health", body)
		req.ContentLength = 50 << 20
		rec := httptest.NewRecorder()
		New(tc.cfg).Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("%s: status %d (%s), want 413 with a JSON body", tc.name, rec.Code, rec.Header().Get("Content-Type"))
		}
		var eb errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
			t.Fatalf("%s: body %q: %v", tc.name, rec.Body, err)
		}
		want := fmt.Sprintf("request body is %d bytes; the limit is %d", 50<<20, tc.limit)
		if eb.Error != "payload_too_large" || eb.Message != want || eb.Timestamp.IsZero() {
			t.Errorf("%s: error body %+v, want payload_too_large saying %q", tc.name, eb, want)
		}
		if body.n != 0 {
			t.Errorf("%s: read %d bytes of a refused body", tc.name, body.n)
		}
	}
}

// TestBodyWithoutLengthCapped: a body of unknown length can be read only up to the limit; the
// reader then fails with *http.MaxBytesError. Requests within the limit are served as before.
func TestBodyWithoutLengthCapped(t *testing.T) {
	const limit = 1000
	var readErr error
	var got int
	h := limitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		got, readErr = len(data), err
	}), limit)
	body := &endless{}
	req := httptest.NewRequest(http.MethodPost, "/", body)
	req.ContentLength = -1
	h.ServeHTTP(httptest.NewRecorder(), req)
	var mbe *http.MaxBytesError
	if !errors.As(readErr, &mbe) || got > limit || body.n > limit+1 {
		t.Errorf("read %d bytes (%d from the stream), error %v; want at most %d and *http.MaxBytesError", got, body.n, readErr, limit)
	}

	rec := httptest.NewRecorder()
	New(Config{MaxBodyBytes: limit}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", strings.NewReader("{}")))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /health with a small body: %d", rec.Code)
	}
}
