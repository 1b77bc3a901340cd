package api

import (
	"net/http"
	"reflect"
	"time"

	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/queue"
)

// ConfigInfo is what GET /config reports that the API cannot read from the orchestrator, its
// pool or its auth configuration.
type ConfigInfo struct {
	// Environment is the deployment environment (tasker-core's TASKER_ENV); "" reports
	// "development", tasker-core's default.
	Environment string
	// Version is the tasker-go version.
	Version string
}

// ConfigResponse is GET /config's body: tasker-core's OrchestrationConfigResponse
// (tasker-shared src/types/api/orchestration.rs), which lists only settings that are safe to
// show: no database URL, no API key, no JWT key ever appears in it (API keys are counted, not
// listed). Orchestration, the Go orchestrator's own settings, is an addition under the same rule.
type ConfigResponse struct {
	Metadata        ConfigMetadata           `json:"metadata"`
	Auth            SafeAuthConfig           `json:"auth"`
	CircuitBreakers SafeCircuitBreakerConfig `json:"circuit_breakers"`
	DatabasePools   SafeDatabasePoolConfig   `json:"database_pools"`
	// DeploymentMode is tasker-core's event system mode: "Hybrid" (notifications with a polling
	// fallback), the way the Go orchestrator consumes results.
	DeploymentMode string                `json:"deployment_mode"`
	Messaging      SafeMessagingConfig   `json:"messaging"`
	Orchestration  OrchestrationSettings `json:"orchestration"`
}

// ConfigMetadata is tasker-core's ConfigMetadata.
type ConfigMetadata struct {
	Timestamp   time.Time `json:"timestamp"`
	Environment string    `json:"environment"`
	Version     string    `json:"version"`
}

// SafeAuthConfig is tasker-core's SafeAuthConfig: how authentication is set up, without keys.
type SafeAuthConfig struct {
	Enabled            bool     `json:"enabled"`
	VerificationMethod string   `json:"verification_method"` // "public_key" or "none"
	JWTIssuer          string   `json:"jwt_issuer"`
	JWTAudience        string   `json:"jwt_audience"`
	APIKeyHeader       string   `json:"api_key_header"`
	APIKeyCount        int      `json:"api_key_count"` // configured api_keys entries
	StrictValidation   bool     `json:"strict_validation"`
	AllowedAlgorithms  []string `json:"allowed_algorithms"`
}

// SafeCircuitBreakerConfig is tasker-core's SafeCircuitBreakerConfig. The Go orchestrator has
// no circuit breakers: enabled is false and the thresholds 0.
type SafeCircuitBreakerConfig struct {
	Enabled          bool `json:"enabled"`
	FailureThreshold int  `json:"failure_threshold"`
	TimeoutSeconds   int  `json:"timeout_seconds"`
	SuccessThreshold int  `json:"success_threshold"`
}

// SafeDatabasePoolConfig is tasker-core's SafeDatabasePoolConfig. The API shares the
// orchestrator's pool: both fields are its maximum size.
type SafeDatabasePoolConfig struct {
	WebAPIPoolSize       int `json:"web_api_pool_size"`
	WebAPIMaxConnections int `json:"web_api_max_connections"`
}

// SafeMessagingConfig is tasker-core's SafeMessagingConfig: the backend and the orchestration
// queues (task requests, task finalizations, step results).
type SafeMessagingConfig struct {
	Backend string   `json:"backend"`
	Queues  []string `json:"queues"`
}

// OrchestrationSettings are the Go orchestrator's effective settings (orchestration.Config).
type OrchestrationSettings struct {
	ProcessorUUID             string          `json:"processor_uuid"`
	ResultPollIntervalSeconds float64         `json:"result_poll_interval_seconds"`
	ReadinessIntervalSeconds  float64         `json:"readiness_interval_seconds"`
	RecoveryIntervalSeconds   float64         `json:"recovery_interval_seconds"`
	ResultBatchSize           int             `json:"result_batch_size"`
	ResultConcurrency         int             `json:"result_concurrency"`
	SweepBatchSize            int             `json:"sweep_batch_size"`
	VisibilityTimeoutSeconds  float64         `json:"visibility_timeout_seconds"`
	DefaultStepTimeoutSeconds float64         `json:"default_step_timeout_seconds"`
	StaleGraceSeconds         float64         `json:"stale_grace_seconds"`
	StuckThresholdSeconds     float64         `json:"stuck_threshold_seconds"`
	MaxStepsPerDecision       int             `json:"max_steps_per_decision"`
	DBCallTimeoutSeconds      float64         `json:"db_call_timeout_seconds"`
	Backoff                   BackoffSettings `json:"backoff"`
}

// BackoffSettings are the retry backoff settings (common.backoff).
type BackoffSettings struct {
	BaseSeconds         float64 `json:"base_seconds"`
	MaxSeconds          float64 `json:"max_seconds"`
	Multiplier          float64 `json:"multiplier"`
	JitterEnabled       bool    `json:"jitter_enabled"`
	JitterMaxPercentage float64 `json:"jitter_max_percentage"`
}

func (a *API) mountOps(mux *http.ServeMux) {
	a.handle(mux, Route{Method: "GET", Path: "/config", Resource: "system", Action: "config_read", Tag: "config",
		Summary: "The orchestrator's configuration, secrets left out",
		Responses: []Response{{Status: 200, Description: "Configuration (safe fields only)", Body: ConfigResponse{}},
			{Status: 401, Description: "Authentication required"}, {Status: 403, Description: "Insufficient permissions"}},
	}, a.getConfig)
}

// getConfig answers GET /config.
func (a *API) getConfig(w http.ResponseWriter, _ *http.Request) {
	env := a.info.Environment
	if env == "" {
		env = "development"
	}
	resp := ConfigResponse{
		Metadata:       ConfigMetadata{Timestamp: time.Now().UTC(), Environment: env, Version: a.info.Version},
		Auth:           safeAuth(a.auth.cfg),
		DeploymentMode: "Hybrid",
		Messaging: SafeMessagingConfig{Backend: "pgmq",
			Queues: []string{queue.TaskRequestsQueue, queue.TaskFinalizationsQueue, queue.StepResultsQueue}},
	}
	if a.pool != nil {
		n := int(a.pool.Config().MaxConns)
		resp.DatabasePools = SafeDatabasePoolConfig{WebAPIPoolSize: n, WebAPIMaxConnections: n}
	}
	if a.orch != nil {
		resp.Orchestration = orchestrationSettings(a.orch.Config())
	}
	writeJSON(w, http.StatusOK, resp)
}

// safeAuth summarizes c as tasker-core does: without an auth section (the zero AuthConfig) it
// reports tasker-core's defaults for a missing one.
func safeAuth(c AuthConfig) SafeAuthConfig {
	s := SafeAuthConfig{
		Enabled:            c.Enabled,
		VerificationMethod: c.JWTVerificationMethod,
		JWTIssuer:          c.JWTIssuer,
		JWTAudience:        c.JWTAudience,
		APIKeyHeader:       c.APIKeyHeader,
		APIKeyCount:        len(c.APIKeys),
		StrictValidation:   c.StrictValidation,
		AllowedAlgorithms:  []string{"RS256"}, // the only algorithm the API verifies
	}
	if reflect.ValueOf(c).IsZero() {
		s.StrictValidation = true
	}
	if s.VerificationMethod == "" {
		s.VerificationMethod = "none"
	}
	if s.APIKeyHeader == "" {
		s.APIKeyHeader = "X-API-Key"
	}
	return s
}

func orchestrationSettings(c orchestration.Config) OrchestrationSettings {
	jitter := c.Backoff.JitterPercent
	if jitter < 0 { // orchestration.NoJitter
		jitter = 0
	}
	return OrchestrationSettings{
		ProcessorUUID:             c.ProcessorUUID.String(),
		ResultPollIntervalSeconds: c.PollInterval.Seconds(),
		ReadinessIntervalSeconds:  c.ReadinessInterval.Seconds(),
		RecoveryIntervalSeconds:   c.RecoveryInterval.Seconds(),
		ResultBatchSize:           c.ResultBatchSize,
		ResultConcurrency:         c.ResultConcurrency,
		SweepBatchSize:            c.SweepBatchSize,
		VisibilityTimeoutSeconds:  c.VisibilityTimeout.Seconds(),
		DefaultStepTimeoutSeconds: c.DefaultStepTimeout.Seconds(),
		StaleGraceSeconds:         c.StaleGrace.Seconds(),
		StuckThresholdSeconds:     c.StuckThreshold.Seconds(),
		MaxStepsPerDecision:       c.MaxDecisionSteps,
		DBCallTimeoutSeconds:      c.DBTimeout.Seconds(),
		Backoff: BackoffSettings{
			BaseSeconds: c.Backoff.Base.Seconds(), MaxSeconds: c.Backoff.Max.Seconds(),
			Multiplier: c.Backoff.Multiplier, JitterEnabled: jitter > 0, JitterMaxPercentage: jitter,
		},
	}
}
