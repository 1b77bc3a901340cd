// Package client is a small HTTP client for the orchestrator's /v1 REST API (tasker-core's
// routes and JSON). Each call returns the decoded value and the response body as sent, so a
// caller can print the API's JSON unchanged. Errors of the API are *APIError.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// APIError is a non-2xx answer with tasker-core's error body {"error":{"code","message"}}.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Client calls one orchestrator. The zero value is not usable; use New or NewLocal.
type Client struct {
	base   string
	token  string // sent as Authorization: Bearer
	apiKey string // sent as X-API-Key
	http   *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken authenticates with a bearer token (JWT).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithAPIKey authenticates with an API key in the X-API-Key header.
func WithAPIKey(key string) Option { return func(c *Client) { c.apiKey = key } }

// WithHTTPClient replaces http.DefaultClient.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client of the orchestrator at baseURL (scheme, host and optional path prefix;
// the /v1 routes are appended).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: want an http(s) URL, got %q", baseURL)
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), http: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// NewLocal returns a client that serves every request with h in-process (no network): the
// same handlers, status codes and bodies as over HTTP.
func NewLocal(h http.Handler, opts ...Option) *Client {
	c := &Client{base: "http://local", http: &http.Client{Transport: handlerTransport{h}}}
	for _, o := range opts {
		o(c)
	}
	return c
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: rec.header,
		Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: r,
	}, nil
}

// recorder is the http.ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// do sends method path with body (JSON-encoded when not nil) and decodes a 2xx answer into out
// (when not nil). It returns the body as received.
func (c *Client) do(ctx context.Context, method, path string, body, out any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("client: encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.apiKey != "" {
		req.Header.Set("X-API-Key", c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("client: read %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(raw))}
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &eb) == nil && (eb.Error.Code != "" || eb.Error.Message != "") {
			ae.Code, ae.Message = eb.Error.Code, eb.Error.Message
		}
		return raw, ae
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("client: decode %s %s: %w", method, path, err)
		}
	}
	return raw, nil
}

// IsStatus reports whether err is an *APIError with HTTP status code.
func IsStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == code
}

// CreateTask is POST /v1/tasks with a TaskRequest (tasker-core's JSON).
func (c *Client) CreateTask(ctx context.Context, request json.RawMessage) (*Task, json.RawMessage, error) {
	var t Task
	raw, err := c.do(ctx, http.MethodPost, "/v1/tasks", request, &t)
	return &t, raw, err
}

// Task is GET /v1/tasks/{uuid}.
func (c *Client) Task(ctx context.Context, id string) (*Task, json.RawMessage, error) {
	var t Task
	raw, err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id), nil, &t)
	return &t, raw, err
}

// CancelTask is DELETE /v1/tasks/{uuid}; it returns the task after cancellation.
func (c *Client) CancelTask(ctx context.Context, id string) (*Task, json.RawMessage, error) {
	var t Task
	raw, err := c.do(ctx, http.MethodDelete, "/v1/tasks/"+url.PathEscape(id), nil, &t)
	return &t, raw, err
}

// TaskQuery is GET /v1/tasks's query; zero fields are not sent.
type TaskQuery struct {
	Page, PerPage int
	Namespace     string
	Status        string
}

// ListTasks is GET /v1/tasks.
func (c *Client) ListTasks(ctx context.Context, q TaskQuery) (*TaskList, json.RawMessage, error) {
	v := url.Values{}
	if q.Page > 0 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if q.PerPage > 0 {
		v.Set("per_page", strconv.Itoa(q.PerPage))
	}
	if q.Namespace != "" {
		v.Set("namespace", q.Namespace)
	}
	if q.Status != "" {
		v.Set("status", q.Status)
	}
	var l TaskList
	raw, err := c.do(ctx, http.MethodGet, "/v1/tasks"+query(v), nil, &l)
	return &l, raw, err
}

// Summary is GET /v1/tasks/{uuid}/summary.
func (c *Client) Summary(ctx context.Context, id string) (*Summary, json.RawMessage, error) {
	var s Summary
	raw, err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id)+"/summary", nil, &s)
	return &s, raw, err
}

// Steps is GET /v1/tasks/{uuid}/workflow_steps.
func (c *Client) Steps(ctx context.Context, task string) ([]Step, json.RawMessage, error) {
	var s []Step
	raw, err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(task)+"/workflow_steps", nil, &s)
	return s, raw, err
}

// ResolveStep is PATCH /v1/tasks/{uuid}/workflow_steps/{step_uuid} with a StepManualAction.
func (c *Client) ResolveStep(ctx context.Context, task, step string, action ManualAction) (*Step, json.RawMessage, error) {
	var s Step
	raw, err := c.do(ctx, http.MethodPatch, "/v1/tasks/"+url.PathEscape(task)+"/workflow_steps/"+url.PathEscape(step), action, &s)
	return &s, raw, err
}

// DLQQuery is GET /v1/dlq's query; zero fields are not sent.
type DLQQuery struct {
	ResolutionStatus string
	Limit, Offset    int
}

// DLQ is GET /v1/dlq, newest entry first.
func (c *Client) DLQ(ctx context.Context, q DLQQuery) ([]DLQEntry, json.RawMessage, error) {
	v := url.Values{}
	if q.ResolutionStatus != "" {
		v.Set("resolution_status", q.ResolutionStatus)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	var out []DLQEntry
	raw, err := c.do(ctx, http.MethodGet, "/v1/dlq"+query(v), nil, &out)
	return out, raw, err
}

// DLQEntry is GET /v1/dlq/task/{task_uuid}, the task's most recent entry.
func (c *Client) DLQEntry(ctx context.Context, task string) (*DLQEntry, json.RawMessage, error) {
	var e DLQEntry
	raw, err := c.do(ctx, http.MethodGet, "/v1/dlq/task/"+url.PathEscape(task), nil, &e)
	return &e, raw, err
}

// UpdateDLQEntry is PATCH /v1/dlq/entry/{dlq_entry_uuid}.
func (c *Client) UpdateDLQEntry(ctx context.Context, entry string, u DLQUpdate) (*DLQUpdated, json.RawMessage, error) {
	var out DLQUpdated
	raw, err := c.do(ctx, http.MethodPatch, "/v1/dlq/entry/"+url.PathEscape(entry), u, &out)
	return &out, raw, err
}

// DLQStats is GET /v1/dlq/stats.
func (c *Client) DLQStats(ctx context.Context) ([]DLQStats, json.RawMessage, error) {
	var out []DLQStats
	raw, err := c.do(ctx, http.MethodGet, "/v1/dlq/stats", nil, &out)
	return out, raw, err
}

func query(v url.Values) string {
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}
