package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/protocol"
)

// statusServer answers /status/<code> with that code; Retry-After and body come from the query.
func statusServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if ra := r.URL.Query().Get("retry_after"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		body := r.URL.Query().Get("body")
		if body != "" && json.Valid([]byte(body)) {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAPIStatusClassification(t *testing.T) {
	srv := statusServer(t)
	api := NewAPI(srv.URL, 5*time.Second)
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		code       int
		query      url.Values
		success    bool
		retryable  bool
		class      string
		message    string
		retryAfter string
		hint       protocol.BackoffHintType
	}{
		{name: "200 json", code: 200, query: url.Values{"body": {`{"id":7}`}}, success: true},
		{name: "204 empty", code: 204, success: true},
		{name: "400", code: 400, query: url.Values{"body": {`{"error":"amount must be positive"}`}}, class: HTTPClassPermanent, message: "HTTP 400: amount must be positive"},
		{name: "401", code: 401, class: HTTPClassPermanent, message: "HTTP 401: Unauthorized"},
		{name: "403", code: 403, class: HTTPClassPermanent, message: "HTTP 403: Forbidden"},
		{name: "404", code: 404, query: url.Values{"body": {`{"error":{"message":"no such user"}}`}}, class: HTTPClassPermanent, message: "HTTP 404: no such user"},
		{name: "409", code: 409, class: HTTPClassPermanent, message: "HTTP 409: Conflict"},
		{name: "422", code: 422, query: url.Values{"body": {`{"detail":"bad email"}`}}, class: HTTPClassPermanent, message: "HTTP 422: bad email"},
		{name: "408", code: 408, retryable: true, class: HTTPClassTransient, message: "HTTP 408: Request Timeout"},
		{name: "429 with seconds", code: 429, query: url.Values{"retry_after": {"17"}}, retryable: true, class: HTTPClassRateLimited,
			message: "HTTP 429: Too Many Requests", retryAfter: "17", hint: protocol.BackoffRateLimit},
		{name: "429 without header", code: 429, retryable: true, class: HTTPClassRateLimited, message: "HTTP 429: Too Many Requests"},
		{name: "500", code: 500, query: url.Values{"body": {"plain text failure"}}, retryable: true, class: HTTPClassTransient, message: "HTTP 500: Internal Server Error"},
		{name: "502", code: 502, retryable: true, class: HTTPClassTransient, message: "HTTP 502: Bad Gateway"},
		{name: "503 with date", code: 503, query: url.Values{"retry_after": {future}}, retryable: true, class: HTTPClassTransient,
			message: "HTTP 503: Service Unavailable", retryAfter: "90", hint: protocol.BackoffServiceUnavailable},
		{name: "504 with seconds", code: 504, query: url.Values{"retry_after": {"5"}}, retryable: true, class: HTTPClassTransient,
			message: "HTTP 504: Gateway Timeout", retryAfter: "5", hint: protocol.BackoffServerRequested},
		{name: "505", code: 505, retryable: true, class: HTTPClassTransient, message: "HTTP 505: HTTP Version Not Supported"},
		{name: "400 ignores Retry-After", code: 400, query: url.Values{"retry_after": {"10"}}, class: HTTPClassPermanent, message: "HTTP 400: Bad Request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := api.Get(context.Background(), "/status/"+strconv.Itoa(tc.code), tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if resp.OK() != tc.success || (!tc.success && resp.IsRetryable() != tc.retryable) {
				t.Fatalf("OK=%v retryable=%v", resp.OK(), resp.IsRetryable())
			}
			r := APIResult(resp)
			ser := ToExecutionResult(testStepUUID, r, time.Millisecond)
			if _, err := protocol.DecodeStepExecutionResultStrict(mustMarshal(t, ser)); err != nil {
				t.Fatalf("not acceptable to tasker-core: %v", err)
			}
			if tc.success {
				if !ser.Success || string(ser.Metadata.Custom["status_code"]) != strconv.Itoa(tc.code) {
					t.Fatalf("success result: %+v", ser)
				}
				return
			}
			wantType := ErrorTypePermanent
			if tc.retryable {
				wantType = ErrorTypeRetryable
			}
			if ser.Success || ser.Metadata.Retryable != tc.retryable || ser.Error.Retryable != tc.retryable ||
				*ser.Error.ErrorType != wantType || ser.Error.Message != tc.message ||
				*ser.Metadata.ErrorCode != "HTTP_"+strconv.Itoa(tc.code) || ser.Error.StatusCode == nil || int(*ser.Error.StatusCode) != tc.code {
				t.Fatalf("failure result: %s", mustMarshal(t, ser))
			}
			if got := string(ser.Metadata.Context["classification"]); got != strconv.Quote(tc.class) {
				t.Fatalf("classification %s", got)
			}
			om := ser.OrchestrationMetadata
			if tc.retryAfter == "" {
				if len(om.Headers) != 0 || om.BackoffHint != nil {
					t.Fatalf("unexpected backoff: %+v", om)
				}
				return
			}
			got := om.Headers[protocol.RetryAfterHeader]
			if tc.code == 503 {
				// An HTTP date is converted to whole seconds from now.
				secs, _ := strconv.Atoi(got)
				if secs < 85 || secs > 91 {
					t.Fatalf("Retry-After from date = %q", got)
				}
			} else if got != tc.retryAfter {
				t.Fatalf("Retry-After = %q want %q", got, tc.retryAfter)
			}
			if om.BackoffHint == nil || om.BackoffHint.BackoffType != tc.hint || strconv.Itoa(int(om.BackoffHint.DelaySeconds)) != got {
				t.Fatalf("backoff hint: %+v", om.BackoffHint)
			}
		})
	}
}

func TestAPIRequests(t *testing.T) {
	var got struct {
		method, path, query, contentType, auth, accept string
		body                                           map[string]any
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.query = r.Method, r.URL.Path, r.URL.RawQuery
		got.contentType, got.auth, got.accept = r.Header.Get("Content-Type"), r.Header.Get("Authorization"), r.Header.Get("Accept")
		got.body = nil
		_ = json.NewDecoder(r.Body).Decode(&got.body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true,"echo":"`+r.Method+`"}`)
	}))
	defer srv.Close()
	api := API{BaseURL: srv.URL + "/v1/", Headers: map[string]string{"Authorization": "Bearer t"}}
	ctx := context.Background()

	resp, err := api.Post(ctx, "payments", map[string]any{"amount": 10})
	if err != nil || got.method != "POST" || got.path != "/v1/payments" || got.contentType != "application/json" ||
		got.auth != "Bearer t" || got.accept != "application/json" || got.body["amount"] != float64(10) {
		t.Fatalf("POST: %v %+v", err, got)
	}
	var decoded struct {
		OK   bool   `json:"ok"`
		Echo string `json:"echo"`
	}
	if err := resp.Decode(&decoded); err != nil || !decoded.OK || decoded.Echo != "POST" {
		t.Fatalf("Decode: %v %+v", err, decoded)
	}
	assertJSONEqual(t, outputJSON(t, api.APISuccess(resp)), []byte(`{"ok":true,"echo":"POST"}`))

	if _, err := api.Put(ctx, "/payments/1", json.RawMessage(`{"x":1}`)); err != nil || got.method != "PUT" || got.path != "/v1/payments/1" || got.body["x"] != float64(1) {
		t.Fatalf("PUT: %v %+v", err, got)
	}
	if _, err := api.Patch(ctx, "payments/1", struct {
		Note string `json:"note"`
	}{"n"}); err != nil || got.method != "PATCH" || got.body["note"] != "n" {
		t.Fatalf("PATCH: %v %+v", err, got)
	}
	if _, err := api.Delete(ctx, "payments/1"); err != nil || got.method != "DELETE" || got.contentType != "" {
		t.Fatalf("DELETE: %v %+v", err, got)
	}
	if _, err := api.Get(ctx, "users?active=1", url.Values{"page": {"2"}}); err != nil || got.query != "active=1&page=2" {
		t.Fatalf("GET query: %v %q", err, got.query)
	}
	if _, err := api.Do(ctx, "GET", srv.URL+"/abs", nil, map[string]string{"Authorization": "override"}); err != nil || got.path != "/abs" || got.auth != "override" {
		t.Fatalf("absolute URL / per-request header: %v %+v", err, got)
	}
	if _, err := api.Post(ctx, "x", make(chan int)); err == nil || Classify(err).Retryable {
		t.Fatalf("unencodable body must be a permanent error: %v", err)
	}
}

func TestAPITransportErrors(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	_, err := NewAPI(slow.URL, 50*time.Millisecond).Get(context.Background(), "/", nil)
	if se := Classify(err); err == nil || se.ErrorType != ErrorTypeTimeout || !se.Retryable {
		t.Fatalf("client timeout: %v → %+v", err, se)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = API{BaseURL: slow.URL}.Get(ctx, "/", nil)
	if se := Classify(err); !errors.Is(err, context.DeadlineExceeded) || se.ErrorType != ErrorTypeTimeout || !se.Retryable {
		t.Fatalf("context deadline: %v → %+v", err, se)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	addr := closed.URL
	closed.Close()
	_, err = API{BaseURL: addr}.Get(context.Background(), "/", nil)
	r := ErrorResult(err)
	if err == nil || r.Error.ErrorType != ErrorTypeNetwork || !r.Retryable() {
		t.Fatalf("connection refused: %v → %+v", err, r.Error)
	}
}

func TestAPIHelpers(t *testing.T) {
	resp := &APIResponse{StatusCode: 200, Body: []byte("plain text")}
	assertJSONEqual(t, outputJSON(t, APISuccess(resp)), []byte(`{"data":"plain text"}`))
	resp = &APIResponse{StatusCode: 500, Header: http.Header{}, Body: nil, Method: "GET", URL: "http://x/y"}
	r := APIFailure(resp, "charge failed")
	if r.Error.Message != "charge failed" || !r.Retryable() || r.Error.Context["url"] != "http://x/y" {
		t.Fatalf("custom message: %+v", r.Error)
	}
	if r := APIFailure(&APIResponse{StatusCode: 200, Header: http.Header{}}, ""); r.Kind != KindFailure || r.Retryable() {
		t.Fatalf("APIFailure on 2xx: %+v", r)
	}
	var a API
	if a.APIResult(resp).Kind != KindFailure || a.APIFailure(resp, "").Kind != KindFailure {
		t.Fatal("embedded helpers")
	}
	if err := (&APIResponse{StatusCode: 200, Body: []byte("{")}).Decode(&struct{}{}); Classify(err).Code != "INVALID_RESPONSE_BODY" {
		t.Fatalf("decode error: %v", err)
	}
	now := time.Date(2026, 3, 21, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"120": 2 * time.Minute, "0": 0, "Sat, 21 Mar 2026 12:00:30 GMT": 30 * time.Second, "Sat, 21 Mar 2026 11:00:00 GMT": 0,
	} {
		if d, ok := ParseRetryAfter(in, now); !ok || d != want {
			t.Errorf("ParseRetryAfter(%q) = %v %v", in, d, ok)
		}
	}
	for _, in := range []string{"", "-5", "soon"} {
		if _, ok := ParseRetryAfter(in, now); ok {
			t.Errorf("ParseRetryAfter(%q) accepted", in)
		}
	}
	for code, want := range map[int]string{200: "success", 301: HTTPClassUnexpected, 418: HTTPClassPermanent, 599: HTTPClassTransient} {
		if got, _ := ClassifyStatus(code); got != want {
			t.Errorf("ClassifyStatus(%d) = %s", code, got)
		}
	}
}
