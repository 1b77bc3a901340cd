// Package web serves a tasker-go process's operational HTTP endpoints with net/http: health
// probes shaped like tasker-core's worker (/health, /health/live, /health/ready,
// /health/detailed), Prometheus metrics (/metrics, served by client_golang's promhttp in the
// text format or, when the scraper asks for it, OpenMetrics), and the templates API
// (/v1/templates).
//
// The server is built against small interfaces (checks, metric collectors, a template source),
// so the orchestrator can serve /health and /metrics with its own checks and collectors;
// NewWorker assembles the worker's.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-go/tasker/protocol"
)

// Config configures a Server.
type Config struct {
	// Addr is the listen address (host:port; port 0 picks a free one).
	Addr string
	// IDKey is the JSON key of InstanceID in health bodies (default "worker_id").
	IDKey string
	// InstanceID identifies the process in health bodies, e.g. the worker id.
	InstanceID string
	// NotReadyMessage is the message of the 503 readiness body (default tasker-core's worker
	// text, "Worker is not ready to process steps").
	NotReadyMessage string
	// Checks are the readiness checks, run concurrently on every /health/ready.
	Checks []Check
	// CheckTimeout bounds each check (default 3s).
	CheckTimeout time.Duration
	// Collectors are registered, with the Go runtime and process collectors, in the server's
	// own registry and served on /metrics. New panics if one cannot be registered (a metric
	// described twice or inconsistently), as http.ServeMux does for conflicting patterns.
	Collectors []prometheus.Collector
	// SystemInfo, when set, adds "system_info" to the readiness and detailed bodies.
	SystemInfo func() map[string]any
	// Templates, when set, serves GET /v1/templates and /v1/templates/{namespace}/{name}/{version}.
	Templates TemplateSource
	// Routes, when set, registers more routes on the server's mux (the orchestrator's /v1 API).
	Routes func(mux *http.ServeMux)
	// TemplateAccess, when set, guards the template routes and decides who sees handler
	// initialization (an *api.API on an orchestrator, api.NewWorkerTemplateAccess on a worker);
	// without it they are open, initialization included.
	TemplateAccess TemplateAccess
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies (default protocol.MaxTaskRequestBytes, the largest
	// body a tasker endpoint takes): a larger declared body is answered 413 before it is read,
	// and reading past the limit fails.
	MaxBodyBytes int64
}

// Server is an HTTP server for health, metrics and templates. Create it with New, then Start it
// (or mount Handler yourself) and Shutdown it.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	handler  http.Handler // mux behind the body limit
	log      *slog.Logger
	draining atomic.Bool

	mu   sync.Mutex
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// New returns a Server for cfg; it does not listen yet.
func New(cfg Config) *Server {
	if cfg.IDKey == "" {
		cfg.IDKey = "worker_id"
	}
	if cfg.NotReadyMessage == "" {
		cfg.NotReadyMessage = "Worker is not ready to process steps"
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = protocol.MaxTaskRequestBytes
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	s.handler = limitBody(s.mux, cfg.MaxBodyBytes)
	s.mux.HandleFunc("GET /health", s.health("healthy"))
	s.mux.HandleFunc("GET /health/live", s.health("alive"))
	s.mux.HandleFunc("GET /health/ready", s.ready)
	s.mux.HandleFunc("GET /health/detailed", s.detailed)
	s.mux.Handle("GET /metrics", metricsHandler(newRegistry(cfg.Collectors), s.log))
	if cfg.Templates != nil {
		guard := func(_ string, h http.Handler) http.Handler { return h }
		if cfg.TemplateAccess != nil {
			guard = cfg.TemplateAccess.GuardTemplates
		}
		s.mux.Handle("GET /v1/templates", guard("list", http.HandlerFunc(s.listTemplates)))
		s.mux.Handle("GET /v1/templates/{namespace}/{name}/{version}", guard("read", http.HandlerFunc(s.getTemplate)))
	}
	if cfg.Routes != nil {
		cfg.Routes(s.mux)
	}
	return s
}

// Handler returns the server's routes behind its body limit, for mounting in another server or
// in tests.
func (s *Server) Handler() http.Handler { return s.handler }

// limitBody answers 413 with a JSON error body to a request whose declared Content-Length is
// over limit, without reading it, and caps every other body at limit bytes with
// http.MaxBytesReader, so no handler can be made to read more.
func limitBody(next http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			bodyTooLarge(w, &protocol.SizeError{What: "request body", Size: r.ContentLength, Limit: limit})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// bodyTooLarge answers 413 Payload Too Large with tasker-core's error body naming the size and
// the limit.
func bodyTooLarge(w http.ResponseWriter, se *protocol.SizeError) {
	w.Header().Set("Connection", "close") // the rest of the body is not read
	writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large", se.Error())
}

// Start listens on Config.Addr and serves in the background until Shutdown.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("web: server already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("web: listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("web server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
	s.log.Info("web server listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address the server listens on ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// BeginShutdown makes /health/ready answer 503 from now on, so load balancers and probes stop
// sending work while the process drains. Liveness is unaffected.
func (s *Server) BeginShutdown() { s.draining.Store(true) }

// Draining reports whether BeginShutdown (or Shutdown) was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// Shutdown flips readiness to 503 and stops the server gracefully: it stops accepting
// connections and waits, until ctx ends, for requests in progress.
func (s *Server) Shutdown(ctx context.Context) error {
	s.BeginShutdown()
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("web: shutdown: %w", err)
	}
	<-done
	return nil
}

func (s *Server) health(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"status":    status,
			"timestamp": time.Now().UTC(),
			s.cfg.IDKey: s.cfg.InstanceID,
		})
	}
}

// errorBody is tasker-core's ErrorResponse, plus the checks for readiness failures.
type errorBody struct {
	Error     string                 `json:"error"`
	Message   string                 `json:"message"`
	Timestamp time.Time              `json:"timestamp"`
	RequestID *string                `json:"request_id"`
	Checks    map[string]CheckResult `json:"checks,omitempty"`
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	var (
		checks map[string]CheckResult
		ok     bool
	)
	if s.draining.Load() {
		msg := "shutting down"
		checks = map[string]CheckResult{"shutdown": {Status: StatusUnhealthy, Message: &msg, LastChecked: time.Now().UTC()}}
	} else {
		checks, ok = runChecks(r.Context(), s.cfg.Checks, s.cfg.CheckTimeout)
	}
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{
			Error: "service_unavailable", Message: s.cfg.NotReadyMessage, Timestamp: time.Now().UTC(), Checks: checks,
		})
		return
	}
	body := map[string]any{
		"status":    "ready",
		"timestamp": time.Now().UTC(),
		s.cfg.IDKey: s.cfg.InstanceID,
		"checks":    checks,
	}
	if s.cfg.SystemInfo != nil {
		body["system_info"] = s.cfg.SystemInfo()
	}
	writeJSON(w, http.StatusOK, body)
}

// detailed always answers 200 with the overall status (healthy, degraded or unhealthy) and every
// check; it is for people, /health/ready is for probes.
func (s *Server) detailed(w http.ResponseWriter, r *http.Request) {
	checks, _ := runChecks(r.Context(), s.cfg.Checks, s.cfg.CheckTimeout)
	status := StatusHealthy
	for _, c := range checks {
		if c.Status == StatusUnhealthy {
			status = StatusUnhealthy
			break
		}
		if c.Status == StatusDegraded {
			status = StatusDegraded
		}
	}
	if s.draining.Load() {
		status = StatusUnhealthy
		msg := "shutting down"
		checks["shutdown"] = CheckResult{Status: StatusUnhealthy, Message: &msg, LastChecked: time.Now().UTC()}
	}
	body := map[string]any{
		"status":    status,
		"timestamp": time.Now().UTC(),
		s.cfg.IDKey: s.cfg.InstanceID,
		"checks":    checks,
	}
	if s.cfg.SystemInfo != nil {
		body["system_info"] = s.cfg.SystemInfo()
	}
	writeJSON(w, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, errorBody{Error: kind, Message: msg, Timestamp: time.Now().UTC()})
}
