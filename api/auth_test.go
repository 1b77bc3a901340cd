package api

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	keysOnce          sync.Once
	signKey, otherKey *rsa.PrivateKey
)

func testKeys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if signKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return signKey, otherKey
}

func publicPEM(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// claims are a valid token's claims for issuer "tasker-core-test" and audience "tasker-api-test".
func claims(perms ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": "svc-1", "iss": "tasker-core-test", "aud": "tasker-api-test",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "permissions": perms}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authConfig(t *testing.T) AuthConfig {
	k, _ := testKeys(t)
	return AuthConfig{
		Enabled: true, JWTIssuer: "tasker-core-test", JWTAudience: "tasker-api-test", JWTVerificationMethod: "public_key",
		JWTPublicKey: publicPEM(t, k), APIKeyHeader: "X-API-Key", APIKeysEnabled: true,
		StrictValidation: true, LogUnknownPermissions: true,
		APIKeys: []APIKey{
			{Key: "full", Permissions: []string{"tasks:*", "steps:*", "dlq:*", "templates:*", "system:*", "worker:*"}, Description: "Full access"},
			{Key: "read-only", Permissions: []string{"tasks:read", "tasks:list", "steps:read", "dlq:read", "dlq:stats",
				"system:handlers_read", "system:analytics_read", "system:config_read"}, Description: "Read-only"},
			{Key: "tasks-only", Permissions: []string{"tasks:*"}, Description: "Tasks-only"},
			{Key: "none", Permissions: []string{}, Description: "No permissions"},
		},
	}
}

func TestJWTVerify(t *testing.T) {
	k, other := testKeys(t)
	v, err := newJWTVerifier([]byte(publicPEM(t, k)), "tasker-core-test", "tasker-api-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	with := func(key string, val any) jwt.MapClaims {
		c := claims("tasks:read")
		if val == nil {
			delete(c, key)
		} else {
			c[key] = val
		}
		return c
	}
	now := time.Now()
	pubPEM := []byte(publicPEM(t, k))
	for name, tc := range map[string]struct {
		token string
		ok    bool
	}{
		"good":                        {sign(t, jwt.SigningMethodRS256, k, claims("tasks:read")), true},
		"expired":                     {sign(t, jwt.SigningMethodRS256, k, with("exp", now.Add(-2*time.Minute).Unix())), false},
		"expired within leeway":       {sign(t, jwt.SigningMethodRS256, k, with("exp", now.Add(-30*time.Second).Unix())), true},
		"not yet valid":               {sign(t, jwt.SigningMethodRS256, k, with("nbf", now.Add(5*time.Minute).Unix())), false},
		"no exp":                      {sign(t, jwt.SigningMethodRS256, k, with("exp", nil)), false},
		"no sub":                      {sign(t, jwt.SigningMethodRS256, k, with("sub", nil)), false},
		"no iat":                      {sign(t, jwt.SigningMethodRS256, k, with("iat", nil)), false},
		"wrong issuer":                {sign(t, jwt.SigningMethodRS256, k, with("iss", "someone-else")), false},
		"no issuer":                   {sign(t, jwt.SigningMethodRS256, k, with("iss", nil)), false},
		"wrong audience":              {sign(t, jwt.SigningMethodRS256, k, with("aud", "other-api")), false},
		"audience array":              {sign(t, jwt.SigningMethodRS256, k, with("aud", []string{"tasker-api-test"})), false},
		"no audience":                 {sign(t, jwt.SigningMethodRS256, k, with("aud", nil)), false},
		"signed by another key":       {sign(t, jwt.SigningMethodRS256, other, claims("tasks:read")), false},
		"RS384":                       {sign(t, jwt.SigningMethodRS384, k, claims("tasks:read")), false},
		"PS256":                       {sign(t, jwt.SigningMethodPS256, k, claims("tasks:read")), false},
		"alg none":                    {sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("tasks:read")), false},
		"HS256 keyed with public key": {sign(t, jwt.SigningMethodHS256, pubPEM, claims("tasks:read")), false},
		"permissions not strings":     {sign(t, jwt.SigningMethodRS256, k, with("permissions", []int{1})), false},
		"malformed":                   {"not-a-token", false},
		"two segments":                {"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0", false},
		"empty":                       {"", false},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := v.verify(tc.token)
			if tc.ok != (err == nil) {
				t.Fatalf("verify: err = %v, want ok = %v", err, tc.ok)
			}
			if tc.ok && (*c.Subject != "svc-1" || len(c.Permissions) != 1 || c.Permissions[0] != "tasks:read") {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
	// The clock: a token is valid until exp plus the leeway.
	late, err := newJWTVerifier(pubPEM, "tasker-core-test", "tasker-api-test", func() time.Time { return now.Add(time.Hour + 2*time.Minute) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.verify(sign(t, jwt.SigningMethodRS256, k, claims())); err == nil {
		t.Fatal("token accepted two minutes after exp")
	}
}

// call runs one request through a route guarded with resource/action and returns the response.
func call(t *testing.T, cfg AuthConfig, resource, action string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	a, err := newAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := a.wrap(resource, action, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok && resource != "health" {
			t.Error("no principal in the handler's context")
		}
		_, _ = io.WriteString(w, p.Method+" "+p.Subject)
	}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// checkFailure asserts tasker-core's 401/403 body and headers.
func checkFailure(t *testing.T, w *httptest.ResponseRecorder, status int, message, reason, severity, retryAfter string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d (body %s)", w.Code, status, w.Body)
	}
	code := map[int]string{401: "AUTHENTICATION_FAILED", 403: "AUTHORIZATION_FAILED"}[status]
	var body map[string]map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if len(body) != 1 || len(body["error"]) != 2 || body["error"]["code"] != code || body["error"]["message"] != message {
		t.Fatalf("body %s, want code %s message %q", w.Body, code, message)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if got := w.Header().Get("x-auth-failure-reason"); got != reason {
		t.Fatalf("x-auth-failure-reason %q, want %q", got, reason)
	}
	if got := w.Header().Get("x-auth-failure-severity"); got != severity {
		t.Fatalf("x-auth-failure-severity %q, want %q", got, severity)
	}
	if got := w.Header().Get("Retry-After"); got != retryAfter {
		t.Fatalf("Retry-After %q, want %q", got, retryAfter)
	}
}

func TestGuardAuthentication(t *testing.T) {
	k, other := testKeys(t)
	cfg := authConfig(t)
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	checkFailure(t, call(t, cfg, "tasks", "list", nil), 401, "Missing authentication credentials", "missing", "low", "")
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}),
		401, "Missing authentication credentials", "missing", "low", "")
	checkFailure(t, call(t, cfg, "tasks", "list", bearer("garbage")), 401, "Invalid or expired token", "invalid", "high", "60")
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer "}),
		401, "Invalid or expired token", "invalid", "high", "60")
	checkFailure(t, call(t, cfg, "tasks", "list", bearer(sign(t, jwt.SigningMethodRS256, other, claims("tasks:list")))),
		401, "Invalid or expired token", "invalid", "high", "60")
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"X-API-Key": "unknown"}), 401, "Invalid API key", "invalid", "high", "60")
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer \xff"}),
		401, "Malformed Authorization header", "malformed", "high", "60")
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"X-API-Key": "full\xff"}),
		401, "Malformed API key header", "malformed", "high", "60")

	// A good token passes; a bearer token wins over an API key; a non-Bearer Authorization
	// falls back to the API key.
	good := sign(t, jwt.SigningMethodRS256, k, claims("tasks:list"))
	for name, hdr := range map[string]map[string]string{
		"token":             bearer(good),
		"token and bad key": {"Authorization": "Bearer " + good, "X-API-Key": "unknown"},
		"api key":           {"X-API-Key": "tasks-only"},
		"basic and key":     {"Authorization": "Basic x", "x-api-key": "tasks-only"},
	} {
		w := call(t, cfg, "tasks", "list", hdr)
		if w.Code != 200 {
			t.Fatalf("%s: status %d body %s", name, w.Code, w.Body)
		}
	}
	if w := call(t, cfg, "tasks", "list", bearer(good)); w.Body.String() != "jwt svc-1" {
		t.Fatalf("principal %q", w.Body)
	}
	if w := call(t, cfg, "tasks", "list", map[string]string{"X-API-Key": "tasks-only"}); w.Body.String() != "api_key Tasks-only" {
		t.Fatalf("principal %q", w.Body)
	}
	// A bad token is refused even when a good API key comes along.
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer x", "X-API-Key": "full"}),
		401, "Invalid or expired token", "invalid", "high", "60")

	// A custom header name.
	cfg2 := cfg
	cfg2.APIKeyHeader = "X-Tasker-Key"
	if w := call(t, cfg2, "tasks", "list", map[string]string{"X-Tasker-Key": "full"}); w.Code != 200 {
		t.Fatalf("custom header: %d", w.Code)
	}
	checkFailure(t, call(t, cfg2, "tasks", "list", map[string]string{"X-API-Key": "full"}), 401, "Missing authentication credentials", "missing", "low", "")
}

func TestGuardAPIKeys(t *testing.T) {
	cfg := authConfig(t)
	// api_keys_enabled off: the configured keys are not accepted.
	off := cfg
	off.APIKeysEnabled = false
	checkFailure(t, call(t, off, "tasks", "list", map[string]string{"X-API-Key": "full"}), 401, "Invalid API key", "invalid", "high", "60")

	// The legacy key is granted "*", which matches nothing: 403 without strict validation...
	legacy := cfg
	legacy.APIKeysEnabled, legacy.APIKey, legacy.StrictValidation = false, "legacy-secret", false
	checkFailure(t, call(t, legacy, "tasks", "list", map[string]string{"X-API-Key": "legacy-secret"}),
		403, "Missing required permission: tasks:list", "forbidden", "medium", "5")
	// ...and a configuration error with it (tasker-core refuses every request with that key).
	legacy.StrictValidation = true
	if _, err := newAuthenticator(legacy); err == nil || !strings.Contains(err.Error(), `unknown permissions ["*"]`) {
		t.Fatalf("NewGuard = %v", err)
	}
	// Unknown permissions in an API key: refused at start when strict, else the key works and
	// its known permissions apply.
	bad := cfg
	bad.APIKeys = []APIKey{{Key: "k", Permissions: []string{"tasks:read", "tasks:delete", "bogus:*"}}}
	if _, err := newAuthenticator(bad); err == nil || !strings.Contains(err.Error(), `["tasks:delete" "bogus:*"]`) {
		t.Fatalf("NewGuard = %v", err)
	}
	bad.StrictValidation = false
	if w := call(t, bad, "tasks", "read", map[string]string{"X-API-Key": "k"}); w.Code != 200 {
		t.Fatalf("lenient unknown permission: %d", w.Code)
	}
	// No key configured at all.
	none := cfg
	none.APIKeys = nil
	checkFailure(t, call(t, none, "tasks", "list", map[string]string{"X-API-Key": "full"}), 401, "Invalid API key", "invalid", "high", "60")
}

func TestGuardTokenPermissionsVocabulary(t *testing.T) {
	k, _ := testKeys(t)
	cfg := authConfig(t)
	tok := sign(t, jwt.SigningMethodRS256, k, claims("tasks:list", "tasks:delete"))
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer " + tok}),
		401, "Invalid or expired token", "invalid", "high", "60")
	cfg.StrictValidation = false
	if w := call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer " + tok}); w.Code != 200 {
		t.Fatalf("lenient: %d", w.Code)
	}
	// Without a public key bearer tokens are refused, API keys still work.
	cfg.JWTPublicKey = ""
	checkFailure(t, call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer " + tok}),
		401, "Invalid or expired token", "invalid", "high", "60")
	if w := call(t, cfg, "tasks", "list", map[string]string{"X-API-Key": "full"}); w.Code != 200 {
		t.Fatalf("api key without JWT: %d", w.Code)
	}
}

// TestGuardPermissions checks every resource/action tasker-core routes with against the
// permission it requires (tasker-shared types/resources.rs test_all_permission_mappings), with
// the exact permission, the resource wildcard, another resource's wildcard, and "*".
func TestGuardPermissions(t *testing.T) {
	k, _ := testKeys(t)
	cfg := authConfig(t)
	cfg.StrictValidation = false // so that "*" is presented rather than refused
	for _, m := range []struct{ resource, action, perm string }{
		{"tasks", "create", "tasks:create"},
		{"tasks", "read", "tasks:read"},
		{"tasks", "list", "tasks:list"},
		{"tasks", "cancel", "tasks:cancel"},
		{"tasks", "context_read", "tasks:context_read"},
		{"steps", "read", "steps:read"},
		{"steps", "list", "steps:read"},
		{"steps", "resolve", "steps:resolve"},
		{"dlq", "read", "dlq:read"},
		{"dlq", "list", "dlq:read"},
		{"dlq", "update", "dlq:update"},
		{"dlq", "stats", "dlq:stats"},
		{"templates", "read", "templates:read"},
		{"templates", "list", "templates:read"},
		{"templates", "validate", "templates:validate"},
		{"system", "config_read", "system:config_read"},
		{"system", "handlers_read", "system:handlers_read"},
		{"system", "analytics_read", "system:analytics_read"},
		{"worker", "config_read", "worker:config_read"},
		{"worker", "read", "worker:templates_read"},
		{"worker", "list", "worker:templates_read"},
		{"worker", "validate", "templates:validate"},
	} {
		res, _, _ := strings.Cut(m.perm, ":")
		otherWildcard := "tasks:*"
		if res == "tasks" {
			otherWildcard = "dlq:*"
		}
		for perms, want := range map[string]int{
			m.perm:                           200,
			res + ":*":                       200,
			otherWildcard:                    403,
			"*":                              403,
			"":                               403,
			m.perm + "x":                     403,
			strings.ToUpper(m.perm):          403,
			"tasks:read,steps:read,dlq:read": map[bool]int{true: 200, false: 403}[m.perm == "tasks:read" || m.perm == "steps:read" || m.perm == "dlq:read"],
		} {
			var list []string
			if perms != "" {
				list = strings.Split(perms, ",")
			}
			w := call(t, cfg, m.resource, m.action, map[string]string{"Authorization": "Bearer " + sign(t, jwt.SigningMethodRS256, k, claims(list...))})
			if w.Code != want {
				t.Errorf("%s:%s with %q: status %d, want %d", m.resource, m.action, perms, w.Code, want)
			}
			if want == 403 {
				checkFailure(t, w, 403, "Missing required permission: "+m.perm, "forbidden", "medium", "5")
			}
		}
	}
	// The read-only key of tasker-core's auth-test.toml.
	for _, ra := range [][2]string{{"tasks", "read"}, {"steps", "list"}, {"dlq", "stats"}, {"system", "analytics_read"}} {
		if w := call(t, cfg, ra[0], ra[1], map[string]string{"X-API-Key": "read-only"}); w.Code != 200 {
			t.Errorf("read-only %v: %d", ra, w.Code)
		}
	}
	for _, ra := range [][2]string{{"tasks", "create"}, {"tasks", "cancel"}, {"steps", "resolve"}, {"dlq", "update"}} {
		if w := call(t, cfg, ra[0], ra[1], map[string]string{"X-API-Key": "read-only"}); w.Code != 403 {
			t.Errorf("read-only %v: %d", ra, w.Code)
		}
	}
	// Public resources need nothing; an unknown pair is a programming error.
	if w := call(t, cfg, "health", "read", nil); w.Code != 200 {
		t.Fatalf("health: %d", w.Code)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("tasks:delete did not panic")
			}
		}()
		call(t, cfg, "tasks", "delete", nil)
	}()
	if got := len(Permissions()); got != 17 {
		t.Fatalf("%d permissions, tasker-core has 17: %q", got, Permissions())
	}
}

func TestGuardDisabled(t *testing.T) {
	for name, cfg := range map[string]AuthConfig{"zero": {}, "disabled": func() AuthConfig { c := authConfig(t); c.Enabled = false; return c }()} {
		w := call(t, cfg, "dlq", "update", nil)
		if w.Code != 200 || w.Body.String() != "disabled anonymous" {
			t.Fatalf("%s: %d %q", name, w.Code, w.Body)
		}
	}
}

func TestNewAuthenticatorConfig(t *testing.T) {
	k, other := testKeys(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(path, []byte(publicPEM(t, other)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The path wins over the inline key.
	cfg := authConfig(t)
	cfg.JWTPublicKeyPath = path
	if w := call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer " + sign(t, jwt.SigningMethodRS256, other, claims("tasks:list"))}); w.Code != 200 {
		t.Fatalf("key from path: %d", w.Code)
	}
	if w := call(t, cfg, "tasks", "list", map[string]string{"Authorization": "Bearer " + sign(t, jwt.SigningMethodRS256, k, claims("tasks:list"))}); w.Code != 401 {
		t.Fatalf("inline key used although a path is set: %d", w.Code)
	}
	// PKCS#1 "RSA PUBLIC KEY" is accepted too.
	pkcs1 := authConfig(t)
	pkcs1.JWTPublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.PublicKey)}))
	if w := call(t, pkcs1, "tasks", "list", map[string]string{"Authorization": "Bearer " + sign(t, jwt.SigningMethodRS256, k, claims("tasks:list"))}); w.Code != 200 {
		t.Fatalf("PKCS#1 key: %d", w.Code)
	}
	for name, mut := range map[string]func(*AuthConfig){
		"missing file": func(c *AuthConfig) { c.JWTPublicKeyPath = filepath.Join(dir, "nope.pem") },
		"not a key":    func(c *AuthConfig) { c.JWTPublicKey = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" },
		"jwks":         func(c *AuthConfig) { c.JWTVerificationMethod = "jwks" },
		"empty key":    func(c *AuthConfig) { c.APIKeys = append(c.APIKeys, APIKey{Description: "blank"}) },
	} {
		c := authConfig(t)
		mut(&c)
		if _, err := newAuthenticator(c); err == nil {
			t.Errorf("%s: no error", name)
		}
		// Disabled, the same configuration is not checked.
		c.Enabled = false
		if _, err := newAuthenticator(c); err != nil {
			t.Errorf("%s disabled: %v", name, err)
		}
	}
}

func TestWarnIfUnprotected(t *testing.T) {
	for addr, warn := range map[string]bool{
		"0.0.0.0:8080": true, ":8080": true, "[::]:8080": true, "10.1.2.3:8080": true, "example.com:80": true,
		"127.0.0.1:8080": false, "127.9.9.9:1": false, "[::1]:8080": false, "localhost:8080": false,
	} {
		var buf bytes.Buffer
		WarnIfUnprotected(addr, AuthConfig{}, slog.New(slog.NewTextHandler(&buf, nil)))
		if got := strings.Contains(buf.String(), "level=WARN"); got != warn {
			t.Errorf("%s: warned %v, want %v (%s)", addr, got, warn, buf.String())
		}
		buf.Reset()
		WarnIfUnprotected(addr, AuthConfig{Enabled: true}, slog.New(slog.NewTextHandler(&buf, nil)))
		if buf.Len() != 0 {
			t.Errorf("%s: warned with auth enabled: %s", addr, buf.String())
		}
	}
}

func TestTemplateAccess(t *testing.T) {
	k, _ := testKeys(t)
	cfg := authConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(nil, nil, Options{Logger: quiet, Auth: cfg})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorkerTemplateAccess(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(guard func(string, http.Handler) http.Handler, show func(*http.Request) bool, perms ...string) (int, bool) {
		var shown bool
		h := guard("read", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { shown = show(r) }))
		r := httptest.NewRequest(http.MethodGet, "/v1/templates/a/b/1", nil)
		r.Header.Set("Authorization", "Bearer "+sign(t, jwt.SigningMethodRS256, k, claims(perms...)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code, shown
	}
	for _, tc := range []struct {
		who    string
		perms  []string
		status int
		shown  bool
	}{
		{"orchestrator", []string{"templates:read"}, 200, false},
		{"orchestrator", []string{"templates:*", "worker:templates_read"}, 200, true},
		{"orchestrator", []string{"worker:templates_read"}, 403, false},
		{"worker", []string{"worker:templates_read"}, 200, true},
		{"worker", []string{"worker:*"}, 200, true},
		{"worker", []string{"templates:read"}, 403, false},
	} {
		guard, show := a.GuardTemplates, a.ShowInitialization
		if tc.who == "worker" {
			guard, show = w.GuardTemplates, w.ShowInitialization
		}
		if status, shown := serve(guard, show, tc.perms...); status != tc.status || shown != tc.shown {
			t.Errorf("%s with %q: status %d shown %v, want %d %v", tc.who, tc.perms, status, shown, tc.status, tc.shown)
		}
	}
	// Auth off: shown; no guard ran: not shown.
	off, err := New(nil, nil, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if status, shown := serve(off.GuardTemplates, off.ShowInitialization); status != 200 || !shown {
		t.Errorf("auth off: %d %v", status, shown)
	}
	if a.ShowInitialization(httptest.NewRequest(http.MethodGet, "/", nil)) {
		t.Error("shown without a guard's principal")
	}
}
