package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker/protocol"
)

// DefaultAPITimeout is the request timeout of an API without Client or Timeout.
const DefaultAPITimeout = 30 * time.Second

// maxAPIResponseBody bounds how much of a response body is read.
const maxAPIResponseBody = 32 << 20

// HTTP failure classifications stored in metadata.context.classification (tasker-core's names).
const (
	HTTPClassRateLimited = "rate_limited"
	HTTPClassPermanent   = "permanent_error"
	HTTPClassTransient   = "transient_error"
	HTTPClassUnexpected  = "network_error"
)

// API is the HTTP capability: embed it in a handler struct to get JSON Get/Post/Put/Patch/Delete
// against BaseURL and helpers that turn responses into Results with tasker-core's status
// classification and Retry-After handling.
type API struct {
	// BaseURL is prefixed to request paths (a path that is already an absolute URL is used as is).
	BaseURL string
	// Client is used for requests; nil means a client with Timeout.
	Client *http.Client
	// Timeout applies when Client is nil (DefaultAPITimeout when zero).
	Timeout time.Duration
	// Headers are sent with every request.
	Headers map[string]string
}

// NewAPI returns an API for baseURL with its own client and timeout.
func NewAPI(baseURL string, timeout time.Duration) API {
	if timeout <= 0 {
		timeout = DefaultAPITimeout
	}
	return API{BaseURL: baseURL, Client: &http.Client{Timeout: timeout}, Timeout: timeout}
}

func (a API) client() *http.Client {
	if a.Client != nil {
		return a.Client
	}
	t := a.Timeout
	if t <= 0 {
		t = DefaultAPITimeout
	}
	return &http.Client{Timeout: t}
}

func (a API) url(path string) string {
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") || a.BaseURL == "" {
		return path
	}
	return strings.TrimRight(a.BaseURL, "/") + "/" + strings.TrimLeft(path, "/")
}

// Get sends GET path?query.
func (a API) Get(ctx context.Context, path string, query url.Values) (*APIResponse, error) {
	if len(query) > 0 {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + query.Encode()
	}
	return a.Do(ctx, http.MethodGet, path, nil, nil)
}

// Post sends body as JSON.
func (a API) Post(ctx context.Context, path string, body any) (*APIResponse, error) {
	return a.Do(ctx, http.MethodPost, path, body, nil)
}

// Put sends body as JSON.
func (a API) Put(ctx context.Context, path string, body any) (*APIResponse, error) {
	return a.Do(ctx, http.MethodPut, path, body, nil)
}

// Patch sends body as JSON.
func (a API) Patch(ctx context.Context, path string, body any) (*APIResponse, error) {
	return a.Do(ctx, http.MethodPatch, path, body, nil)
}

// Delete sends DELETE path.
func (a API) Delete(ctx context.Context, path string) (*APIResponse, error) {
	return a.Do(ctx, http.MethodDelete, path, nil, nil)
}

// Do sends a request. body may be nil, []byte, json.RawMessage, io.Reader or any value to
// encode as JSON. Every HTTP status yields a response and a nil error; the error is for
// encoding and transport failures (pass it to ErrorResult: timeouts and connection errors are
// retryable).
func (a API) Do(ctx context.Context, method, path string, body any, headers map[string]string) (*APIResponse, error) {
	var reader io.Reader
	isJSON := false
	switch b := body.(type) {
	case nil:
	case io.Reader:
		reader = b
	case []byte:
		reader = bytes.NewReader(b)
	case json.RawMessage:
		reader, isJSON = bytes.NewReader(b), true
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, PermanentError("encode request body").WithCode("REQUEST_ENCODING").Wrap(err)
		}
		reader, isJSON = bytes.NewReader(data), true
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url(path), reader)
	if err != nil {
		return nil, PermanentError(fmt.Sprintf("build %s request", method)).WithCode("INVALID_REQUEST").Wrap(err)
	}
	req.Header.Set("Accept", "application/json")
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range a.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := a.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponseBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, req.URL.Redacted(), err)
	}
	return &APIResponse{StatusCode: resp.StatusCode, Header: resp.Header, Body: data, Method: method, URL: req.URL.Redacted()}, nil
}

// APIResponse is a completed HTTP exchange.
type APIResponse struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	Method     string
	URL        string
}

// OK reports a 2xx status.
func (r *APIResponse) OK() bool { return r.StatusCode >= 200 && r.StatusCode < 300 }

// IsClientError reports a 4xx status.
func (r *APIResponse) IsClientError() bool { return r.StatusCode >= 400 && r.StatusCode < 500 }

// IsServerError reports a 5xx status.
func (r *APIResponse) IsServerError() bool { return r.StatusCode >= 500 && r.StatusCode < 600 }

// IsRetryable reports whether a failed request may succeed later (see ClassifyStatus).
func (r *APIResponse) IsRetryable() bool {
	_, retryable := ClassifyStatus(r.StatusCode)
	return !r.OK() && retryable
}

// Decode decodes the JSON body into v.
func (r *APIResponse) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return PermanentError(fmt.Sprintf("decode response of %s %s", r.Method, r.URL)).WithCode("INVALID_RESPONSE_BODY").Wrap(err)
	}
	return nil
}

// RetryAfter parses the Retry-After header (delay seconds or an HTTP date).
func (r *APIResponse) RetryAfter() (time.Duration, bool) {
	return ParseRetryAfter(r.Header.Get("Retry-After"), time.Now())
}

// ParseRetryAfter parses a Retry-After value relative to now; past dates give 0.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// ClassifyStatus maps an HTTP status to tasker-core's classification: 2xx success; 429
// rate_limited; 408 and 5xx transient_error (retryable); other 4xx permanent_error (400, 401,
// 403, 404, 422, …); anything else network_error (retryable).
func ClassifyStatus(code int) (class string, retryable bool) {
	switch {
	case code >= 200 && code < 300:
		return "success", false
	case code == http.StatusTooManyRequests:
		return HTTPClassRateLimited, true
	case code == http.StatusRequestTimeout:
		return HTTPClassTransient, true
	case code >= 400 && code < 500:
		return HTTPClassPermanent, false
	case code >= 500 && code < 600:
		return HTTPClassTransient, true
	}
	return HTTPClassUnexpected, true
}

// Err is nil for a 2xx response and otherwise a *StepError: message "HTTP <code>: <detail>",
// retryable_error or permanent_error per ClassifyStatus, code HTTP_<code>, the status code, the
// Retry-After delay, and context {status_code, classification, method, url}.
func (r *APIResponse) Err() error {
	if r.OK() {
		return nil
	}
	class, retryable := ClassifyStatus(r.StatusCode)
	se := PermanentError(r.failureMessage())
	if retryable {
		se = RetryableError(se.Message)
	}
	se.WithCode("HTTP_"+strconv.Itoa(r.StatusCode)).WithStatusCode(r.StatusCode).
		WithContext("status_code", r.StatusCode).WithContext("classification", class).
		WithContext("method", r.Method).WithContext("url", r.URL)
	if d, ok := r.RetryAfter(); ok && retryable {
		se.WithRetryAfter(d)
	}
	return se
}

func (r *APIResponse) failureMessage() string {
	var body map[string]any
	if json.Unmarshal(r.Body, &body) == nil {
		for _, key := range []string{"error", "message", "detail", "error_message", "msg"} {
			switch v := body[key].(type) {
			case string:
				if v != "" {
					return fmt.Sprintf("HTTP %d: %s", r.StatusCode, v)
				}
			case map[string]any:
				if m, ok := v["message"].(string); ok && m != "" {
					return fmt.Sprintf("HTTP %d: %s", r.StatusCode, m)
				}
			}
		}
	}
	text := http.StatusText(r.StatusCode)
	if text == "" {
		text = "HTTP Error"
	}
	return fmt.Sprintf("HTTP %d: %s", r.StatusCode, text)
}

// APISuccess returns a success whose output is the JSON body (or {"data": <body text>} when the
// body is not JSON, {} when empty), with metadata.custom.status_code.
func APISuccess(resp *APIResponse) Result {
	var value any = map[string]any{}
	if len(bytes.TrimSpace(resp.Body)) > 0 {
		if json.Valid(resp.Body) {
			value = json.RawMessage(resp.Body)
		} else {
			value = map[string]any{"data": string(resp.Body)}
		}
	}
	return Success(value, map[string]any{"status_code": resp.StatusCode})
}

// APIFailure returns the failure for a non-2xx response (see APIResponse.Err), with Retry-After
// turned into the Retry-After header and a backoff hint (RateLimit for 429, ServiceUnavailable
// for 503, ServerRequested otherwise). message, when non-empty, replaces the generated message.
func APIFailure(resp *APIResponse, message string) Result {
	err := resp.Err()
	if err == nil {
		return Failure(fmt.Sprintf("HTTP %d treated as failure", resp.StatusCode), ErrorTypePermanent, false,
			WithStatusCode(resp.StatusCode), WithCode("HTTP_"+strconv.Itoa(resp.StatusCode)))
	}
	se := err.(*StepError)
	if message != "" {
		se.Message = message
	}
	r := ErrorResult(se)
	if r.BackoffHint != nil {
		switch resp.StatusCode {
		case http.StatusTooManyRequests:
			r.BackoffHint.BackoffType = protocol.BackoffRateLimit
		case http.StatusServiceUnavailable:
			r.BackoffHint.BackoffType = protocol.BackoffServiceUnavailable
		}
	}
	return r
}

// APIResult is APISuccess for a 2xx response and APIFailure otherwise.
func APIResult(resp *APIResponse) Result {
	if resp.OK() {
		return APISuccess(resp)
	}
	return APIFailure(resp, "")
}

// APISuccess is the package-level APISuccess, for handlers embedding API.
func (API) APISuccess(resp *APIResponse) Result { return APISuccess(resp) }

// APIFailure is the package-level APIFailure, for handlers embedding API.
func (API) APIFailure(resp *APIResponse, message string) Result { return APIFailure(resp, message) }

// APIResult is the package-level APIResult, for handlers embedding API.
func (API) APIResult(resp *APIResponse) Result { return APIResult(resp) }
