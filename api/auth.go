package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/tasker-go/tasker/config"
)

// AuthConfig is tasker-core's web auth configuration (orchestration.web.auth.* or
// worker.web.auth.*), loaded by package config. The zero value disables authentication.
type AuthConfig = config.WebAuth

// APIKey is one configured API key (an orchestration.web.auth.api_keys entry).
type APIKey = config.APIKey

// Authentication methods reported in Principal.Method.
const (
	MethodJWT      = "jwt"
	MethodAPIKey   = "api_key"
	MethodDisabled = "disabled"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	// Subject is the token's sub, or the API key's description.
	Subject string
	// Method is MethodJWT, MethodAPIKey or MethodDisabled (auth is off: everything is allowed).
	Method      string
	Permissions []string
}

type principalKey struct{}

// PrincipalFrom returns the caller a guarded handler runs for.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// legacyKeyPermissions are granted to the legacy api_key, as tasker-core does; "*" matches no
// permission.
var legacyKeyPermissions = []string{"*"}

// authenticator checks credentials and permissions.
type authenticator struct {
	cfg    AuthConfig
	header string
	jwt    *jwtVerifier // nil: bearer tokens are refused
	keys   []hashedKey
}

type hashedKey struct {
	hash        [sha256.Size]byte
	permissions []string
	description string
}

// newAuthenticator validates cfg and loads the public key. It fails when auth is enabled and the
// key file cannot be read, the key is not an RSA public key, the verification method is not
// public_key, an API key is empty, or (under strict validation) an API key grants a permission
// outside the vocabulary, since that key could never be accepted.
func newAuthenticator(cfg AuthConfig) (*authenticator, error) {
	a := &authenticator{cfg: cfg, header: cfg.APIKeyHeader}
	if !cfg.Enabled {
		return a, nil
	}
	if a.header == "" {
		a.header = "X-API-Key"
	}
	if m := cfg.JWTVerificationMethod; m != "" && m != "public_key" {
		return nil, fmt.Errorf("api: auth: jwt_verification_method %q is not supported (only public_key)", m)
	}
	pemKey := []byte(cfg.JWTPublicKey)
	if cfg.JWTPublicKeyPath != "" {
		b, err := os.ReadFile(cfg.JWTPublicKeyPath)
		if err != nil {
			return nil, fmt.Errorf("api: auth: read jwt_public_key_path: %w", err)
		}
		pemKey = b
	}
	if strings.TrimSpace(string(pemKey)) != "" {
		v, err := newJWTVerifier(pemKey, cfg.JWTIssuer, cfg.JWTAudience, nil)
		if err != nil {
			return nil, fmt.Errorf("api: auth: %w", err)
		}
		a.jwt = v
	}
	keys := cfg.APIKeys
	if !cfg.APIKeysEnabled || len(keys) == 0 {
		keys = nil
		if cfg.APIKey != "" {
			keys = []APIKey{{Key: cfg.APIKey, Permissions: legacyKeyPermissions, Description: "Legacy API key"}}
		}
	}
	for i, k := range keys {
		if k.Key == "" {
			return nil, fmt.Errorf("api: auth: api key %d (%q) is empty", i, k.Description)
		}
		if cfg.StrictValidation {
			if bad := unknownPermissions(k.Permissions); len(bad) > 0 {
				return nil, fmt.Errorf("api: auth: api key %d (%q) grants unknown permissions %q, which strict_validation refuses (known: %s and <resource>:*)",
					i, k.Description, bad, strings.Join(Permissions(), ", "))
			}
		}
		a.keys = append(a.keys, hashedKey{hash: sha256.Sum256([]byte(k.Key)), permissions: k.Permissions, description: k.Description})
	}
	return a, nil
}

// authFailure is a 401 or 403 with tasker-core's x-auth-failure-* headers.
type authFailure struct {
	status   int
	message  string
	reason   string // missing, expired, invalid, malformed, forbidden
	severity string // low, medium, high
}

func (f *authFailure) write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Auth-Failure-Reason", f.reason)
	h.Set("X-Auth-Failure-Severity", f.severity)
	switch f.severity { // tasker-core's Retry-After hint per severity
	case "medium":
		h.Set("Retry-After", "5")
	case "high":
		h.Set("Retry-After", "60")
	}
	code := "AUTHENTICATION_FAILED"
	if f.status == http.StatusForbidden {
		code = "AUTHORIZATION_FAILED"
	}
	writeError(w, &apiError{Status: f.status, Code: code, Message: f.message})
}

// authenticate identifies the caller: a bearer token when the Authorization header holds one,
// else the API key header.
func (a *authenticator) authenticate(r *http.Request, log *slog.Logger) (Principal, *authFailure) {
	if !a.cfg.Enabled {
		return Principal{Subject: "anonymous", Method: MethodDisabled}, nil
	}
	malformed := func(what string) *authFailure {
		log.Warn("auth: header contains non-UTF-8 bytes", "header", what)
		return &authFailure{http.StatusUnauthorized, "Malformed " + what + " header", "malformed", "high"}
	}
	var token, key string
	var hasToken, hasKey bool
	if vs := r.Header.Values("Authorization"); len(vs) > 0 {
		if !utf8.ValidString(vs[0]) {
			return Principal{}, malformed("Authorization")
		}
		token, hasToken = strings.CutPrefix(vs[0], "Bearer ")
	}
	if vs := r.Header.Values(a.header); len(vs) > 0 {
		if !utf8.ValidString(vs[0]) {
			return Principal{}, malformed("API key")
		}
		key, hasKey = vs[0], true
	}
	switch {
	case hasToken:
		p, err := a.verifyToken(token, log)
		if err != nil {
			log.Warn("auth: bearer token refused", "error", err)
			return Principal{}, &authFailure{http.StatusUnauthorized, "Invalid or expired token", "invalid", "high"}
		}
		return p, nil
	case hasKey:
		p, err := a.verifyKey(key, log)
		if err != nil {
			log.Warn("auth: API key refused", "error", err)
			return Principal{}, &authFailure{http.StatusUnauthorized, "Invalid API key", "invalid", "high"}
		}
		return p, nil
	}
	log.Warn("auth: request without credentials", "method", r.Method, "path", r.URL.Path)
	return Principal{}, &authFailure{http.StatusUnauthorized, "Missing authentication credentials", "missing", "low"}
}

func (a *authenticator) verifyToken(token string, log *slog.Logger) (Principal, error) {
	if a.jwt == nil {
		return Principal{}, fmt.Errorf("no JWT public key is configured")
	}
	c, err := a.jwt.verify(token)
	if err != nil {
		return Principal{}, err
	}
	p := Principal{Subject: *c.Subject, Method: MethodJWT, Permissions: c.Permissions}
	return p, a.checkVocabulary(p, log)
}

// verifyKey compares key's hash with every configured key's in constant time.
func (a *authenticator) verifyKey(key string, log *slog.Logger) (Principal, error) {
	h := sha256.Sum256([]byte(key))
	match := -1
	for i := range a.keys {
		if subtle.ConstantTimeCompare(h[:], a.keys[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return Principal{}, fmt.Errorf("unknown API key")
	}
	k := a.keys[match]
	p := Principal{Subject: k.description, Method: MethodAPIKey, Permissions: k.permissions}
	return p, a.checkVocabulary(p, log)
}

// checkVocabulary logs and, under strict validation, refuses unknown permissions.
func (a *authenticator) checkVocabulary(p Principal, log *slog.Logger) error {
	bad := unknownPermissions(p.Permissions)
	if len(bad) == 0 {
		return nil
	}
	if a.cfg.LogUnknownPermissions {
		log.Warn("auth: credentials carry unknown permissions", "subject", p.Subject, "unknown", bad)
	}
	if a.cfg.StrictValidation {
		return fmt.Errorf("unknown permissions: %s", strings.Join(bad, ", "))
	}
	return nil
}

// wrap returns h guarded by the permission resource/action requires. It panics on a pair
// tasker-core has no permission for, as registering a route wrongly is a programming error.
func (a *authenticator) wrap(resource, action string, h http.Handler, log *slog.Logger) http.Handler {
	required, public, err := requiredPermission(resource, action)
	if err != nil {
		panic(err)
	}
	if public {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, fail := a.authenticate(r, log)
		if fail != nil {
			fail.write(w)
			return
		}
		if p.Method != MethodDisabled && !hasPermission(p.Permissions, required) {
			log.Warn("auth: permission denied", "subject", p.Subject, "required", required, "resource", resource, "action", action)
			(&authFailure{http.StatusForbidden, "Missing required permission: " + required, "forbidden", "medium"}).write(w)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// guard wraps h so it runs only for a caller allowed action on resource (tasker-core's
// authorize(Resource, Action, handler)): 401 without valid credentials, 403 without the
// permission, h otherwise; with auth disabled h always runs.
func (a *API) guard(resource, action string, h http.HandlerFunc) http.Handler {
	return a.auth.wrap(resource, action, h, a.log)
}

// GuardTemplates guards the orchestrator's template routes (web.TemplateAccess) with
// templates:read, as tasker-core's orchestration API does.
func (a *API) GuardTemplates(action string, h http.Handler) http.Handler {
	return a.auth.wrap("templates", action, h, a.log)
}

// ShowInitialization implements web.TemplateAccess: tasker-core's orchestration API never shows
// a template's configuration; its worker API shows it (initialization included) under
// worker:templates_read, so only callers allowed that see it here.
func (a *API) ShowInitialization(r *http.Request) bool { return mayReadInitialization(r) }

// mayReadInitialization reports whether r's caller, authenticated by a guard, is allowed
// worker:templates_read (or auth is off). Without a guard's principal it is false.
func mayReadInitialization(r *http.Request) bool {
	p, ok := PrincipalFrom(r.Context())
	return ok && (p.Method == MethodDisabled || hasPermission(p.Permissions, "worker:templates_read"))
}

// WorkerTemplateAccess guards a worker's template routes with worker:templates_read, as
// tasker-core's worker API does (web.TemplateAccess; worker.web.auth).
type WorkerTemplateAccess struct {
	auth *authenticator
	log  *slog.Logger
}

// NewWorkerTemplateAccess checks cfg as New does and returns the worker's template guard.
func NewWorkerTemplateAccess(cfg AuthConfig, log *slog.Logger) (*WorkerTemplateAccess, error) {
	if log == nil {
		log = slog.Default()
	}
	a, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	return &WorkerTemplateAccess{auth: a, log: log}, nil
}

// GuardTemplates implements web.TemplateAccess.
func (w *WorkerTemplateAccess) GuardTemplates(action string, h http.Handler) http.Handler {
	return w.auth.wrap("worker", action, h, w.log)
}

// ShowInitialization implements web.TemplateAccess: the route already required
// worker:templates_read.
func (w *WorkerTemplateAccess) ShowInitialization(*http.Request) bool { return true }

// WarnIfUnprotected logs a warning when auth is disabled and addr (host:port) is not a loopback
// address: anyone who can reach the port may then create, cancel and resolve tasks (or read
// templates' handler initialization from a worker).
func WarnIfUnprotected(addr string, cfg AuthConfig, log *slog.Logger) {
	if cfg.Enabled || isLoopback(addr) {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	log.Warn("HTTP API served without authentication on a non-loopback address; enable "+
		"orchestration.web.auth (worker.web.auth for a worker) or bind to 127.0.0.1", "bind_address", addr)
}

// isLoopback reports whether addr's host is localhost or a loopback IP.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
