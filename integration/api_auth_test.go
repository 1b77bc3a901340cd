package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/web"
)

// authTemplate has a handler initialization a caller without worker:templates_read must not see.
const authTemplate = `
name: auth_task
namespace_name: auth_ns
version: 1.0.0
steps:
  - name: only
    handler:
      callable: auth.only
      initialization:
        api_token: s3cret-initialization-value
`

// authFixture is tasker-core's auth-test.toml orchestration auth section, with a generated key
// pair, plus the keys the test needs.
type authFixture struct {
	key *rsa.PrivateKey
	cfg api.AuthConfig
}

func newAuthFixture(t *testing.T) authFixture {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return authFixture{key: key, cfg: api.AuthConfig{
		Enabled: true, JWTIssuer: "tasker-core-test", JWTAudience: "tasker-api-test", JWTVerificationMethod: "public_key",
		JWTPublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		APIKeyHeader: "X-API-Key", APIKeysEnabled: true, StrictValidation: true, LogUnknownPermissions: true,
		APIKeys: []api.APIKey{
			{Key: "test-api-key-full-access", Permissions: []string{"tasks:*", "steps:*", "dlq:*", "templates:*", "system:*", "worker:*"},
				Description: "Full access test API key"},
			{Key: "test-api-key-tasks-only", Permissions: []string{"tasks:*"}, Description: "Tasks-only test API key"},
			{Key: "test-api-key-no-permissions", Permissions: []string{}, Description: "No permissions test API key"},
		},
	}}
}

// token returns a bearer token granting perms, signed with the fixture's key.
func (f authFixture) token(t *testing.T, perms ...string) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": "integration", "iss": "tasker-core-test", "aud": "tasker-api-test",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "permissions": perms,
	}).SignedString(f.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authDo sends method path (body: JSON text or "") with hdr and returns status, headers and body.
func authDo(t *testing.T, base, method, path, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// authCheckError asserts tasker-core's error body with code and message and the auth failure
// headers.
func authCheckError(t *testing.T, what string, status int, h http.Header, body string, wantStatus int, code, message, reason string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d; body %s", what, status, wantStatus, body)
	}
	var e struct {
		Error map[string]string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error["code"] != code || e.Error["message"] != message || len(e.Error) != 2 {
		t.Fatalf("%s: body %s, want code %s message %q", what, body, code, message)
	}
	if got := h.Get("X-Auth-Failure-Reason"); got != reason {
		t.Fatalf("%s: x-auth-failure-reason %q, want %q", what, got, reason)
	}
}

// TestAPIAuthRoutes mounts the API with tasker-core's test auth configuration on a real
// database and checks, for routes of every resource, 401 without credentials, 403 without the
// permission and 200 with it (as a token and as an API key).
func TestAPIAuthRoutes(t *testing.T) {
	_, pool := testdb.New(t)
	o := orchNew(t, pool, nil)
	orchRegister(t, pool, authTemplate)
	ct := orchCreate(t, o, orchRequest("auth_ns", "auth_task", `{"n": 1}`))
	task := ct.TaskUUID.String()

	f := newAuthFixture(t)
	a, err := api.New(o, pool, api.Options{Logger: orchLogger(), Auth: f.cfg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, rt := range []struct {
		method, path, perm, wildcard string
	}{
		{"GET", "/v1/tasks", "tasks:list", "tasks:*"},
		{"GET", "/v1/tasks/" + task, "tasks:read", "tasks:*"},
		{"GET", "/v1/tasks/" + task + "/workflow_steps", "steps:read", "steps:*"},
		{"GET", "/v1/dlq", "dlq:read", "dlq:*"},
		{"GET", "/v1/dlq/stats", "dlq:stats", "dlq:*"},
		{"GET", "/v1/analytics/performance", "system:analytics_read", "system:*"},
		{"GET", "/config", "system:config_read", "system:*"},
	} {
		name := rt.method + " " + rt.path
		st, h, body := authDo(t, srv.URL, rt.method, rt.path, "", nil)
		authCheckError(t, name+" without credentials", st, h, body, 401, "AUTHENTICATION_FAILED", "Missing authentication credentials", "missing")
		st, h, body = authDo(t, srv.URL, rt.method, rt.path, "", map[string]string{"X-API-Key": "test-api-key-no-permissions"})
		authCheckError(t, name+" without permissions", st, h, body, 403, "AUTHORIZATION_FAILED", "Missing required permission: "+rt.perm, "forbidden")
		st, h, body = authDo(t, srv.URL, rt.method, rt.path, "", map[string]string{"Authorization": "Bearer " + f.token(t, "templates:read")})
		authCheckError(t, name+" with another permission", st, h, body, 403, "AUTHORIZATION_FAILED", "Missing required permission: "+rt.perm, "forbidden")
		if st, _, body := authDo(t, srv.URL, rt.method, rt.path, "", map[string]string{"Authorization": "Bearer " + f.token(t, rt.perm)}); st != 200 {
			t.Fatalf("%s with %s: status %d body %s", name, rt.perm, st, body)
		}
		if st, _, body := authDo(t, srv.URL, rt.method, rt.path, "", map[string]string{"Authorization": "Bearer " + f.token(t, rt.wildcard)}); st != 200 {
			t.Fatalf("%s with %s: status %d body %s", name, rt.wildcard, st, body)
		}
		if st, _, body := authDo(t, srv.URL, rt.method, rt.path, "", map[string]string{"X-API-Key": "test-api-key-full-access"}); st != 200 {
			t.Fatalf("%s with the full-access key: status %d body %s", name, st, body)
		}
	}

	// Writes are refused before they touch anything: a cancel without tasks:cancel leaves the
	// task as it was, and a create without tasks:create is 403 even with a bad body.
	before := orchScalar[string](t, pool, `SELECT string_agg(to_state, ',' ORDER BY sort_key) FROM tasker.task_transitions WHERE task_uuid = $1`, ct.TaskUUID)
	st, h, body := authDo(t, srv.URL, "DELETE", "/v1/tasks/"+task, "", map[string]string{"Authorization": "Bearer " + f.token(t, "tasks:read", "tasks:list")})
	authCheckError(t, "cancel without tasks:cancel", st, h, body, 403, "AUTHORIZATION_FAILED", "Missing required permission: tasks:cancel", "forbidden")
	if after := orchScalar[string](t, pool, `SELECT string_agg(to_state, ',' ORDER BY sort_key) FROM tasker.task_transitions WHERE task_uuid = $1`, ct.TaskUUID); after != before {
		t.Fatalf("task transitions went from %s to %s on a refused cancel", before, after)
	}
	st, h, body = authDo(t, srv.URL, "POST", "/v1/tasks", `{not json`, map[string]string{"X-API-Key": "test-api-key-no-permissions"})
	authCheckError(t, "create without tasks:create", st, h, body, 403, "AUTHORIZATION_FAILED", "Missing required permission: tasks:create", "forbidden")
	st, h, body = authDo(t, srv.URL, "PATCH", "/v1/tasks/"+task+"/workflow_steps/"+uuid.NewString(), `{}`, map[string]string{"X-API-Key": "test-api-key-tasks-only"})
	authCheckError(t, "resolve without steps:resolve", st, h, body, 403, "AUTHORIZATION_FAILED", "Missing required permission: steps:resolve", "forbidden")

	// Bad credentials: an expired token, a token for another audience, an unknown key.
	expired, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "x", "iss": "tasker-core-test", "aud": "tasker-api-test",
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix(), "permissions": []string{"tasks:list"}}).SignedString(f.key)
	if err != nil {
		t.Fatal(err)
	}
	st, h, body = authDo(t, srv.URL, "GET", "/v1/tasks", "", map[string]string{"Authorization": "Bearer " + expired})
	authCheckError(t, "expired token", st, h, body, 401, "AUTHENTICATION_FAILED", "Invalid or expired token", "invalid")
	if h.Get("Retry-After") != "60" {
		t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}
	st, h, body = authDo(t, srv.URL, "GET", "/v1/tasks", "", map[string]string{"X-API-Key": "not-a-key"})
	authCheckError(t, "unknown key", st, h, body, 401, "AUTHENTICATION_FAILED", "Invalid API key", "invalid")
}

// authTemplatesServer serves the worker's template routes from pool, guarded by cfg.
func authTemplatesServer(t *testing.T, pool *pgxpool.Pool, cfg api.AuthConfig) *httptest.Server {
	t.Helper()
	access, err := api.NewWorkerTemplateAccess(cfg, orchLogger())
	if err != nil {
		t.Fatal(err)
	}
	s := web.New(web.Config{Templates: web.DBTemplates{DB: pool}, TemplateAccess: access, Logger: orchLogger()})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// TestAPIAuthWorkerTemplates checks that the worker's template routes, which return handler
// initialization, need worker:templates_read as in tasker-core, and are open only with auth off.
func TestAPIAuthWorkerTemplates(t *testing.T) {
	_, pool := testdb.New(t)
	orchRegister(t, pool, authTemplate)
	f := newAuthFixture(t)
	srv := authTemplatesServer(t, pool, f.cfg)
	const detail = "/v1/templates/auth_ns/auth_task/1.0.0"
	const secret = "s3cret-initialization-value"

	for _, path := range []string{"/v1/templates", detail} {
		st, h, body := authDo(t, srv.URL, "GET", path, "", nil)
		authCheckError(t, path+" without credentials", st, h, body, 401, "AUTHENTICATION_FAILED", "Missing authentication credentials", "missing")
		// templates:read is the orchestration API's permission; the worker's routes need their own.
		st, h, body = authDo(t, srv.URL, "GET", path, "", map[string]string{"Authorization": "Bearer " + f.token(t, "templates:read", "tasks:*")})
		authCheckError(t, path+" with templates:read", st, h, body, 403, "AUTHORIZATION_FAILED", "Missing required permission: worker:templates_read", "forbidden")
		if strings.Contains(body, secret) {
			t.Fatalf("%s: refused body leaks the initialization: %s", path, body)
		}
		st, _, body = authDo(t, srv.URL, "GET", path, "", map[string]string{"Authorization": "Bearer " + f.token(t, "worker:templates_read")})
		if st != 200 {
			t.Fatalf("%s with worker:templates_read: %d %s", path, st, body)
		}
		if path == detail && !strings.Contains(body, secret) {
			t.Fatalf("template detail lacks the initialization: %s", body)
		}
	}
	// Health stays public.
	if st, _, body := authDo(t, srv.URL, "GET", "/health", "", nil); st != 200 {
		t.Fatalf("/health: %d %s", st, body)
	}
	// Auth off: open.
	open := authTemplatesServer(t, pool, api.AuthConfig{})
	if st, _, body := authDo(t, open.URL, "GET", detail, "", nil); st != 200 || !strings.Contains(body, secret) {
		t.Fatalf("auth off: %d %s", st, body)
	}
}

// TestAPIAuthOrchestratorTemplates serves the template routes next to the API, as the
// orchestrator does: they need templates:read, and the detail carries handler initialization
// only for callers also allowed worker:templates_read (tasker-core's orchestration API never
// shows it; its worker API shows it under that permission).
func TestAPIAuthOrchestratorTemplates(t *testing.T) {
	_, pool := testdb.New(t)
	o := orchNew(t, pool, nil)
	orchRegister(t, pool, authTemplate)
	f := newAuthFixture(t)
	a, err := api.New(o, pool, api.Options{Logger: orchLogger(), Auth: f.cfg})
	if err != nil {
		t.Fatal(err)
	}
	s := web.New(web.Config{Templates: web.DBTemplates{DB: pool}, TemplateAccess: a, Routes: a.Mount, Logger: orchLogger()})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	const detail = "/v1/templates/auth_ns/auth_task/1.0.0"
	const secret = "s3cret-initialization-value"

	for _, path := range []string{"/v1/templates", detail} {
		st, h, body := authDo(t, srv.URL, "GET", path, "", nil)
		authCheckError(t, path+" without credentials", st, h, body, 401, "AUTHENTICATION_FAILED", "Missing authentication credentials", "missing")
		st, h, body = authDo(t, srv.URL, "GET", path, "", map[string]string{"X-API-Key": "test-api-key-tasks-only"})
		authCheckError(t, path+" with tasks:*", st, h, body, 403, "AUTHORIZATION_FAILED", "Missing required permission: templates:read", "forbidden")
	}
	st, _, body := authDo(t, srv.URL, "GET", detail, "", map[string]string{"Authorization": "Bearer " + f.token(t, "templates:read")})
	if st != 200 || strings.Contains(body, secret) || !strings.Contains(body, `"callable":"auth.only"`) {
		t.Fatalf("templates:read: %d, want 200 without the initialization: %s", st, body)
	}
	st, _, body = authDo(t, srv.URL, "GET", detail, "", map[string]string{"Authorization": "Bearer " + f.token(t, "templates:read", "worker:templates_read")})
	if st != 200 || !strings.Contains(body, secret) {
		t.Fatalf("templates:read + worker:templates_read: %d, want 200 with the initialization: %s", st, body)
	}
	st, _, body = authDo(t, srv.URL, "GET", detail, "", map[string]string{"X-API-Key": "test-api-key-full-access"})
	if st != 200 || !strings.Contains(body, secret) {
		t.Fatalf("full access: %d %s", st, body)
	}
}
