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
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
)

// cfgGolden names every field of GET /config, where it comes from in tasker-core, and its JSON
// type ("orchestration" is the Go orchestrator's addition).
var cfgGolden = []struct{ path, source, kind string }{
	{"metadata", "types/api/orchestration.rs:OrchestrationConfigResponse.metadata", "object"},
	{"metadata.timestamp", "ConfigMetadata.timestamp (DateTime<Utc>)", "string"},
	{"metadata.environment", "ConfigMetadata.environment", "string"},
	{"metadata.version", "ConfigMetadata.version", "string"},
	{"auth", "OrchestrationConfigResponse.auth", "object"},
	{"auth.enabled", "SafeAuthConfig.enabled", "boolean"},
	{"auth.verification_method", "SafeAuthConfig.verification_method", "string"},
	{"auth.jwt_issuer", "SafeAuthConfig.jwt_issuer", "string"},
	{"auth.jwt_audience", "SafeAuthConfig.jwt_audience", "string"},
	{"auth.api_key_header", "SafeAuthConfig.api_key_header", "string"},
	{"auth.api_key_count", "SafeAuthConfig.api_key_count (usize)", "number"},
	{"auth.strict_validation", "SafeAuthConfig.strict_validation", "boolean"},
	{"auth.allowed_algorithms", "SafeAuthConfig.allowed_algorithms (Vec<String>)", "array"},
	{"circuit_breakers", "OrchestrationConfigResponse.circuit_breakers", "object"},
	{"circuit_breakers.enabled", "SafeCircuitBreakerConfig.enabled", "boolean"},
	{"circuit_breakers.failure_threshold", "SafeCircuitBreakerConfig.failure_threshold (u32)", "number"},
	{"circuit_breakers.timeout_seconds", "SafeCircuitBreakerConfig.timeout_seconds (u32)", "number"},
	{"circuit_breakers.success_threshold", "SafeCircuitBreakerConfig.success_threshold (u32)", "number"},
	{"database_pools", "OrchestrationConfigResponse.database_pools", "object"},
	{"database_pools.web_api_pool_size", "SafeDatabasePoolConfig.web_api_pool_size (u32)", "number"},
	{"database_pools.web_api_max_connections", "SafeDatabasePoolConfig.web_api_max_connections (u32)", "number"},
	{"deployment_mode", "OrchestrationConfigResponse.deployment_mode (DeploymentMode Debug)", "string"},
	{"messaging", "OrchestrationConfigResponse.messaging", "object"},
	{"messaging.backend", "SafeMessagingConfig.backend", "string"},
	{"messaging.queues", "SafeMessagingConfig.queues (Vec<String>)", "array"},
	{"orchestration", "tasker-go", "object"},
	{"orchestration.processor_uuid", "tasker-go", "string"},
	{"orchestration.result_poll_interval_seconds", "tasker-go", "number"},
	{"orchestration.readiness_interval_seconds", "tasker-go", "number"},
	{"orchestration.recovery_interval_seconds", "tasker-go", "number"},
	{"orchestration.result_batch_size", "tasker-go", "number"},
	{"orchestration.result_concurrency", "tasker-go", "number"},
	{"orchestration.sweep_batch_size", "tasker-go", "number"},
	{"orchestration.visibility_timeout_seconds", "tasker-go", "number"},
	{"orchestration.default_step_timeout_seconds", "tasker-go", "number"},
	{"orchestration.stale_grace_seconds", "tasker-go", "number"},
	{"orchestration.stuck_threshold_seconds", "tasker-go", "number"},
	{"orchestration.max_steps_per_decision", "tasker-go", "number"},
	{"orchestration.db_call_timeout_seconds", "tasker-go", "number"},
	{"orchestration.backoff", "tasker-go", "object"},
	{"orchestration.backoff.base_seconds", "tasker-go", "number"},
	{"orchestration.backoff.max_seconds", "tasker-go", "number"},
	{"orchestration.backoff.multiplier", "tasker-go", "number"},
	{"orchestration.backoff.jitter_enabled", "tasker-go", "boolean"},
	{"orchestration.backoff.jitter_max_percentage", "tasker-go", "number"},
}

// cfgFlatten lists every path of v (objects descended, arrays not) with its JSON type.
func cfgFlatten(prefix string, v any, out map[string]string) {
	kind := "null"
	switch x := v.(type) {
	case map[string]any:
		kind = "object"
		for k, c := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			cfgFlatten(p, c, out)
		}
	case []any:
		kind = "array"
	case string:
		kind = "string"
	case float64:
		kind = "number"
	case bool:
		kind = "boolean"
	}
	if prefix != "" {
		out[prefix] = kind
	}
}

func cfgGet(t *testing.T, base, apiKey string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/config", nil)
	if err != nil {
		t.Fatal(err)
	}
	if apiKey != "" {
		req.Header.Set("X-Config-Key", apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestAPIConfig serves GET /config with authentication configured (API keys, a legacy key, a JWT
// public key) on a database reached with a password, and checks tasker-core's fields and types,
// the values, that no secret appears, and system:config_read.
func TestAPIConfig(t *testing.T) {
	dbURL, pool := testdb.New(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	auth := api.AuthConfig{
		Enabled: true, JWTIssuer: "cfg-issuer", JWTAudience: "cfg-audience", JWTVerificationMethod: "public_key",
		JWTPublicKey: pubPEM, APIKeyHeader: "X-Config-Key", APIKeysEnabled: true, StrictValidation: true,
		APIKey: "legacy-secret-key-4711",
		APIKeys: []api.APIKey{
			{Key: "cfg-secret-reader-key-0815", Permissions: []string{"system:config_read"}, Description: "config reader"},
			{Key: "cfg-secret-tasks-key-1234", Permissions: []string{"tasks:*"}, Description: "tasks only"},
		},
	}
	o := orchNew(t, pool, func(c *orchestration.Config) { c.ResultConcurrency = 7 })
	a, err := api.New(o, pool, api.Options{Logger: orchLogger(), Auth: auth,
		Config: api.ConfigInfo{Environment: "test", Version: "v9.9.9-test"}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	if code, body := cfgGet(t, srv.URL, ""); code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d %s", code, body)
	}
	if code, body := cfgGet(t, srv.URL, "cfg-secret-tasks-key-1234"); code != http.StatusForbidden {
		t.Fatalf("without system:config_read: %d %s", code, body)
	}
	before := time.Now().UTC().Add(-time.Second)
	code, body := cfgGet(t, srv.URL, "cfg-secret-reader-key-0815")
	if code != http.StatusOK {
		t.Fatalf("GET /config = %d %s", code, body)
	}

	// No secret, in any form.
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	secrets := []string{dbURL, "cfg-secret-reader-key-0815", "cfg-secret-tasks-key-1234", "legacy-secret-key-4711",
		"BEGIN PUBLIC KEY", strings.Split(strings.TrimSpace(pubPEM), "\n")[1], "postgres://", "postgresql://"}
	if pw != "" {
		secrets = append(secrets, ":"+pw+"@", `"`+pw+`"`)
	}
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Fatalf("GET /config shows a secret (%q):\n%s", s, body)
		}
	}

	// Exactly tasker-core's fields (plus "orchestration"), with their JSON types.
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	cfgFlatten("", doc, got)
	want := map[string]string{}
	for _, g := range cfgGolden {
		want[g.path] = g.kind
		if got[g.path] != g.kind {
			t.Errorf("%s (%s): JSON type %q, want %s", g.path, g.source, got[g.path], g.kind)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected field %s", p)
		}
	}

	var resp api.ConfigResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Metadata.Environment != "test" || resp.Metadata.Version != "v9.9.9-test" ||
		resp.Metadata.Timestamp.Before(before) || resp.Metadata.Timestamp.After(time.Now().Add(time.Second)) {
		t.Errorf("metadata %+v", resp.Metadata)
	}
	wantAuth := api.SafeAuthConfig{Enabled: true, VerificationMethod: "public_key", JWTIssuer: "cfg-issuer",
		JWTAudience: "cfg-audience", APIKeyHeader: "X-Config-Key", APIKeyCount: 2, StrictValidation: true,
		AllowedAlgorithms: []string{"RS256"}}
	if g := resp.Auth; g.Enabled != wantAuth.Enabled || g.VerificationMethod != wantAuth.VerificationMethod ||
		g.JWTIssuer != wantAuth.JWTIssuer || g.JWTAudience != wantAuth.JWTAudience || g.APIKeyHeader != wantAuth.APIKeyHeader ||
		g.APIKeyCount != wantAuth.APIKeyCount || g.StrictValidation != wantAuth.StrictValidation ||
		!slices.Equal(g.AllowedAlgorithms, wantAuth.AllowedAlgorithms) {
		t.Errorf("auth %+v, want %+v", g, wantAuth)
	}
	if resp.DeploymentMode != "Hybrid" || resp.CircuitBreakers.Enabled {
		t.Errorf("deployment_mode %q circuit_breakers %+v", resp.DeploymentMode, resp.CircuitBreakers)
	}
	if resp.Messaging.Backend != "pgmq" || !slices.Equal(resp.Messaging.Queues,
		[]string{"orchestration_task_requests", "orchestration_task_finalizations", "orchestration_step_results"}) {
		t.Errorf("messaging %+v", resp.Messaging)
	}
	if n := int(pool.Config().MaxConns); resp.DatabasePools.WebAPIPoolSize != n || resp.DatabasePools.WebAPIMaxConnections != n {
		t.Errorf("database_pools %+v, want %d", resp.DatabasePools, n)
	}
	oc := o.Config()
	if g := resp.Orchestration; g.ProcessorUUID != oc.ProcessorUUID.String() || g.ResultConcurrency != 7 ||
		g.ReadinessIntervalSeconds != oc.ReadinessInterval.Seconds() || g.ResultPollIntervalSeconds != oc.PollInterval.Seconds() ||
		g.Backoff.JitterEnabled || g.Backoff.BaseSeconds != 1 || g.Backoff.MaxSeconds != 10 || g.MaxStepsPerDecision != oc.MaxDecisionSteps {
		t.Errorf("orchestration %+v", g)
	}

	// Without an auth section: tasker-core's defaults for a missing one.
	open, err := api.New(o, pool, api.Options{Logger: orchLogger()})
	if err != nil {
		t.Fatal(err)
	}
	mux = http.NewServeMux()
	open.Mount(mux)
	srv2 := httptest.NewServer(mux)
	t.Cleanup(srv2.Close)
	code, body = cfgGet(t, srv2.URL, "")
	var openResp api.ConfigResponse
	if err := json.Unmarshal([]byte(body), &openResp); code != 200 || err != nil {
		t.Fatalf("open GET /config = %d %s", code, body)
	}
	if g := openResp.Auth; g.Enabled || g.VerificationMethod != "none" || g.APIKeyHeader != "X-API-Key" || g.APIKeyCount != 0 ||
		!g.StrictValidation || openResp.Metadata.Environment != "development" {
		t.Errorf("open config auth %+v metadata %+v", g, openResp.Metadata)
	}
}
