package config

import (
	"reflect"
	"strings"
	"testing"
)

// tasker-core's config/tasker/generated/auth-test.toml auth section, minus its jwt_private_key,
// jwt_token_expiry_hours, permissions_claim and jwks_* keys, which tasker-go does not take.
const authTOML = `
[common.database]
url = "postgres://x/y"

[orchestration.web.auth]
enabled = true
jwt_issuer = "tasker-core-test"
jwt_audience = "tasker-api-test"
jwt_verification_method = "public_key"
jwt_public_key = ""
jwt_public_key_path = "${TASKER_JWT_PUBLIC_KEY_PATH:-}"
api_key = ""
api_key_header = "X-API-Key"
api_keys_enabled = true
strict_validation = false
log_unknown_permissions = true

[[orchestration.web.auth.api_keys]]
key = "test-api-key-full-access"
permissions = ["tasks:*", "steps:*", "dlq:*", "templates:*", "system:*", "worker:*"]
description = "Full access test API key"

[[orchestration.web.auth.api_keys]]
key = "${KEY_FROM_ENV}"
permissions = ["tasks:read"]

[[orchestration.web.auth.api_keys]]
key = "test-api-key-no-permissions"
permissions = []
description = "No permissions test API key"
`

func TestConfigAuthSection(t *testing.T) {
	c, err := Load(Options{Path: writeTOML(t, authTOML), Getenv: envOf(map[string]string{
		"TASKER_JWT_PUBLIC_KEY_PATH": "/keys/pub.pem", "KEY_FROM_ENV": "k-env"})})
	if err != nil {
		t.Fatal(err)
	}
	want := WebAuth{
		Enabled: true, JWTIssuer: "tasker-core-test", JWTAudience: "tasker-api-test", JWTVerificationMethod: "public_key",
		JWTPublicKeyPath: "/keys/pub.pem", APIKeyHeader: "X-API-Key", APIKeysEnabled: true, LogUnknownPermissions: true,
		APIKeys: []APIKey{
			{Key: "test-api-key-full-access", Permissions: []string{"tasks:*", "steps:*", "dlq:*", "templates:*", "system:*", "worker:*"},
				Description: "Full access test API key"},
			{Key: "k-env", Permissions: []string{"tasks:read"}},
			{Key: "test-api-key-no-permissions", Permissions: []string{}, Description: "No permissions test API key"},
		},
	}
	if !reflect.DeepEqual(c.OrchestrationAuth, want) {
		t.Fatalf("got  %+v\nwant %+v", c.OrchestrationAuth, want)
	}
	if got := c.Source("orchestration.web.auth.api_keys"); got != "file" {
		t.Fatalf("Source = %q", got)
	}
}

func TestConfigAuthDefaultsAndEnvironment(t *testing.T) {
	c, err := Load(Options{Getenv: envOf(map[string]string{"DATABASE_URL": "postgres://x/y",
		"TASKER_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----", "TASKER_JWT_PUBLIC_KEY_PATH": "/p.pem"})})
	if err != nil {
		t.Fatal(err)
	}
	want := WebAuth{JWTIssuer: "tasker-core", JWTAudience: "tasker-api", JWTVerificationMethod: "public_key",
		JWTPublicKey: "-----BEGIN PUBLIC KEY-----", JWTPublicKeyPath: "/p.pem",
		APIKeyHeader: "X-API-Key", StrictValidation: true, LogUnknownPermissions: true}
	if !reflect.DeepEqual(c.OrchestrationAuth, want) {
		t.Fatalf("got  %+v\nwant %+v", c.OrchestrationAuth, want)
	}
	// The worker's section has tasker-core's worker defaults and the same variables.
	want.JWTIssuer, want.JWTAudience = "tasker-worker", "worker-api"
	if !reflect.DeepEqual(c.WorkerAuth, want) {
		t.Fatalf("worker: got  %+v\nwant %+v", c.WorkerAuth, want)
	}
}

func TestConfigAuthErrors(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"jwks": {`orchestration.web.auth = {enabled = true, jwt_verification_method = "jwks"}`,
			`config: orchestration.web.auth.jwt_verification_method: "jwks" is not supported (only public_key)`},
		"empty issuer": {`orchestration.web.auth = {enabled = true, jwt_issuer = ""}`,
			`config: orchestration.web.auth.jwt_issuer: required when auth is enabled`},
		"unknown field": {"[[orchestration.web.auth.api_keys]]\nkey = \"k\"\npermision = [\"tasks:read\"]\n",
			`config: orchestration.web.auth.api_keys: element 0: permision: unknown field (want key, permissions, description)`},
		"not tables": {`orchestration.web.auth.api_keys = ["k"]`,
			`config: orchestration.web.auth.api_keys: element 0: expected a table, got the string "k"`},
		"bad permissions": {"[[orchestration.web.auth.api_keys]]\nkey = \"k\"\npermissions = \"tasks:read\"\n", ""},
		"worker jwks": {"[worker.web.auth]\nenabled = true\njwt_verification_method = \"jwks\"\n",
			`config: worker.web.auth.jwt_verification_method: "jwks" is not supported (only public_key)`},
		"empty key": {"[orchestration.web.auth]\nenabled = true\n[[orchestration.web.auth.api_keys]]\npermissions = []\n",
			`config: orchestration.web.auth.api_keys: element 0: key is empty`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(Options{Path: writeTOML(t, tc.body), Getenv: envOf(map[string]string{"DATABASE_URL": "postgres://x/y"})})
			if tc.want == "" { // a comma-separated string is a list, as for every string-array key
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if texts := errorTexts(t, err); !strings.Contains(strings.Join(texts, "\n"), tc.want) {
				t.Fatalf("errors = %q, want %q", texts, tc.want)
			}
		})
	}
}
