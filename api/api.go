// Package api serves tasker-core's orchestration REST API (/v1 tasks, workflow steps, DLQ,
// analytics, config) over the Go orchestrator, with tasker-core's routes, JSON bodies, status
// codes, error body and permissions, so that clients written for tasker-core work unchanged.
package api

import (
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/orchestration"
)

// Options configure an API.
type Options struct {
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Auth configures authentication and per-route permissions (zero: no authentication).
	Auth AuthConfig
	// ExtraRoutes documents, in the OpenAPI document, routes the same server serves outside the
	// API (the orchestrator's /health, /metrics, /v1/templates). They are not registered.
	ExtraRoutes []Route
	// Config is what GET /config reports beyond the orchestrator's, pool's and auth settings.
	Config ConfigInfo
}

// API holds what the handlers need. Create it with New and Mount it on a mux.
type API struct {
	orch *orchestration.Orchestrator
	pool *pgxpool.Pool
	log  *slog.Logger
	auth *authenticator

	routes []Route // registered by Mount through handle
	extra  []Route // Options.ExtraRoutes
	info   ConfigInfo
}

// New returns an API over o and the pool o uses. It fails when the auth configuration is invalid
// (an unreadable public key, an unknown permission name).
func New(o *orchestration.Orchestrator, pool *pgxpool.Pool, opts Options) (*API, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	auth, err := newAuthenticator(opts.Auth)
	if err != nil {
		return nil, err
	}
	return &API{orch: o, pool: pool, log: log, auth: auth, extra: opts.ExtraRoutes, info: opts.Config}, nil
}

// Mount registers every /v1 route on mux, and the OpenAPI document of them on OpenAPIPath
// (public, as in tasker-core). Call it once per API.
func (a *API) Mount(mux *http.ServeMux) {
	a.routes = nil
	mux.HandleFunc("GET "+OpenAPIPath, a.serveOpenAPI)
	a.mountTasks(mux)
	a.mountSteps(mux)
	a.mountDLQ(mux)
	a.mountAnalytics(mux)
	a.mountOps(mux)
}
