package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/template"
)

// TemplateSource serves the templates API.
type TemplateSource interface {
	// ListTemplates lists the templates, of one namespace when namespace is not empty; an
	// unsupported namespace gives an error wrapping ErrNamespaceNotSupported.
	ListTemplates(ctx context.Context, namespace string) (TemplateList, error)
	// GetTemplate returns one template; version "latest" picks the newest. A missing template
	// gives an error wrapping template.ErrTemplateNotFound or template.ErrNoConfiguration.
	GetTemplate(ctx context.Context, namespace, name, version string) (TemplateDetail, error)
}

// TemplateAccess guards the template routes: *api.API on an orchestrator (templates:read, and
// initialization only for callers allowed worker:templates_read), api.NewWorkerTemplateAccess on
// a worker (worker:templates_read).
type TemplateAccess interface {
	// GuardTemplates wraps the handler of a template route; action is "list" or "read".
	GuardTemplates(action string, h http.Handler) http.Handler
	// ShowInitialization reports whether r's caller may see the steps' handler.initialization
	// (and its environment overrides); when not, a template detail carries none.
	ShowInitialization(r *http.Request) bool
}

// ErrNamespaceNotSupported is wrapped by errors about a namespace this worker does not consume.
var ErrNamespaceNotSupported = errors.New("namespace not supported")

// TemplateList is GET /v1/templates: tasker-core's worker TemplateListResponse
// (supported_namespaces, template_count, cache_stats, worker_capabilities) plus the templates
// themselves and the handler names this process has registered.
type TemplateList struct {
	SupportedNamespaces []string          `json:"supported_namespaces"`
	TemplateCount       int               `json:"template_count"`
	CacheStats          json.RawMessage   `json:"cache_stats"`
	WorkerCapabilities  []string          `json:"worker_capabilities"`
	Templates           []TemplateSummary `json:"templates"`
	RegisteredHandlers  []string          `json:"registered_handlers"`
}

// TemplateSummary describes one registered template (tasker-core's TemplateSummary, plus the
// handler callables its steps name).
type TemplateSummary struct {
	Name        string    `json:"name"`
	Namespace   string    `json:"namespace"`
	Version     string    `json:"version"`
	Description *string   `json:"description"`
	StepCount   int       `json:"step_count"`
	Handlers    []string  `json:"handlers"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// TemplateDetail is GET /v1/templates/{namespace}/{name}/{version}, in tasker-core's worker
// TemplateResponse shape.
type TemplateDetail struct {
	Template        ResolvedTemplate `json:"template"`
	HandlerMetadata HandlerMetadata  `json:"handler_metadata"`
	Cached          bool             `json:"cached"`
	CacheAgeSeconds *uint64          `json:"cache_age_seconds"`
	AccessCount     *uint64          `json:"access_count"`
	// Handlers lists each step's handler callable and whether this process registered it.
	Handlers []StepHandler `json:"handlers"`
}

// ResolvedTemplate is tasker-core's ResolvedTaskTemplate.
type ResolvedTemplate struct {
	Template    *template.TaskTemplate `json:"template"`
	Environment string                 `json:"environment"`
	ResolvedAt  time.Time              `json:"resolved_at"`
}

// HandlerMetadata is tasker-core's HandlerMetadata. A Go worker has no task handler class, so
// HandlerClass holds the template name; ConfigSchema is the template's input_schema.
type HandlerMetadata struct {
	Namespace              string          `json:"namespace"`
	Name                   string          `json:"name"`
	Version                string          `json:"version"`
	HandlerClass           string          `json:"handler_class"`
	ConfigSchema           json.RawMessage `json:"config_schema"`
	DefaultDependentSystem *string         `json:"default_dependent_system"`
	RegisteredAt           time.Time       `json:"registered_at"`
}

// StepHandler names a step's handler callable and whether it is registered in this process.
type StepHandler struct {
	Step       string `json:"step"`
	Callable   string `json:"callable"`
	Registered bool   `json:"registered"`
}

// HandlerLister lists registered handler names; *handlers.Registry satisfies it.
type HandlerLister interface {
	List() []string
}

// TemplateDB is what DBTemplates reads with: a *pgxpool.Pool.
type TemplateDB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DBTemplates is a TemplateSource reading tasker.named_tasks joined with task_namespaces.
type DBTemplates struct {
	DB TemplateDB
	// Handlers lists the handler names this process registered (optional).
	Handlers HandlerLister
	// Namespaces restricts the API to these namespaces (a worker's); empty means all.
	Namespaces []string
	// Environment is reported in template details (default "development", tasker-core's).
	Environment string
}

// workerCapabilities are reported by the list endpoint, as tasker-core's worker does.
var workerCapabilities = []string{"database_access", "message_queues", "step_processing"}

const listTemplatesSQL = `
SELECT tn.name, nt.name, nt.version, nt.description, nt.updated_at,
       COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(nt.configuration->'steps') = 'array'
                                        THEN nt.configuration->'steps' END), 0),
       ARRAY(SELECT DISTINCT s->'handler'->>'callable'
               FROM jsonb_array_elements(CASE WHEN jsonb_typeof(nt.configuration->'steps') = 'array'
                                              THEN nt.configuration->'steps' ELSE '[]'::jsonb END) s
              WHERE s->'handler'->>'callable' IS NOT NULL
              ORDER BY 1)
  FROM tasker.named_tasks nt
  JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
 WHERE cardinality($1::text[]) = 0 OR tn.name = ANY($1::text[])
 ORDER BY tn.name, nt.name, nt.version`

// ListTemplates implements TemplateSource.
func (d DBTemplates) ListTemplates(ctx context.Context, namespace string) (TemplateList, error) {
	filter := d.Namespaces
	if namespace != "" {
		if !d.supports(namespace) {
			return TemplateList{}, fmt.Errorf("%w: namespace '%s' is not supported by this worker", ErrNamespaceNotSupported, namespace)
		}
		filter = []string{namespace}
	}
	if filter == nil {
		filter = []string{}
	}
	rows, err := d.DB.Query(ctx, listTemplatesSQL, filter)
	if err != nil {
		return TemplateList{}, fmt.Errorf("web: list templates: %w", err)
	}
	list := TemplateList{WorkerCapabilities: workerCapabilities, Templates: []TemplateSummary{}, RegisteredHandlers: []string{}}
	var seen []string
	for rows.Next() {
		var t TemplateSummary
		if err := rows.Scan(&t.Namespace, &t.Name, &t.Version, &t.Description, &t.UpdatedAt, &t.StepCount, &t.Handlers); err != nil {
			rows.Close()
			return TemplateList{}, fmt.Errorf("web: list templates: %w", err)
		}
		if t.Handlers == nil {
			t.Handlers = []string{}
		}
		if !slices.Contains(seen, t.Namespace) {
			seen = append(seen, t.Namespace)
		}
		list.Templates = append(list.Templates, t)
	}
	if err := rows.Err(); err != nil {
		return TemplateList{}, fmt.Errorf("web: list templates: %w", err)
	}
	list.TemplateCount = len(list.Templates)
	switch {
	case namespace != "":
		list.SupportedNamespaces = []string{namespace}
	case len(d.Namespaces) > 0:
		list.SupportedNamespaces = slices.Clone(d.Namespaces)
	default:
		list.SupportedNamespaces = seen
	}
	if list.SupportedNamespaces == nil {
		list.SupportedNamespaces = []string{}
	}
	if d.Handlers != nil {
		list.RegisteredHandlers = d.Handlers.List()
	}
	return list, nil
}

// GetTemplate implements TemplateSource.
func (d DBTemplates) GetTemplate(ctx context.Context, namespace, name, version string) (TemplateDetail, error) {
	if !d.supports(namespace) {
		return TemplateDetail{}, fmt.Errorf("%w: %w: namespace '%s' is not supported by this worker",
			template.ErrTemplateNotFound, ErrNamespaceNotSupported, namespace)
	}
	t, id, err := template.Lookup(ctx, d.DB, namespace, name, version)
	if err != nil {
		return TemplateDetail{}, err
	}
	var at time.Time
	if err := d.DB.QueryRow(ctx, `SELECT updated_at FROM tasker.named_tasks WHERE named_task_uuid = $1`, id).Scan(&at); err != nil {
		return TemplateDetail{}, fmt.Errorf("web: template %s: %w", t.Key(), err)
	}
	env := d.Environment
	if env == "" {
		env = "development"
	}
	meta := HandlerMetadata{
		Namespace: t.NamespaceName, Name: t.Name, Version: t.Version, HandlerClass: t.Name,
		ConfigSchema: t.InputSchema, RegisteredAt: at.UTC(),
	}
	if len(meta.ConfigSchema) == 0 {
		meta.ConfigSchema = json.RawMessage("null")
	}
	if p := t.SystemDependencies.Primary; p != "" {
		meta.DefaultDependentSystem = &p
	}
	var registered []string
	if d.Handlers != nil {
		registered = d.Handlers.List()
	}
	handlers := make([]StepHandler, 0, len(t.Steps))
	for _, s := range t.Steps {
		handlers = append(handlers, StepHandler{Step: s.Name, Callable: s.Handler.Callable,
			Registered: slices.Contains(registered, s.Handler.Callable)})
	}
	return TemplateDetail{
		Template:        ResolvedTemplate{Template: t, Environment: env, ResolvedAt: time.Now().UTC()},
		HandlerMetadata: meta,
		Handlers:        handlers,
	}, nil
}

func (d DBTemplates) supports(namespace string) bool {
	return len(d.Namespaces) == 0 || slices.Contains(d.Namespaces, namespace)
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Templates.ListTemplates(r.Context(), r.URL.Query().Get("namespace"))
	if err != nil {
		s.templateError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request) {
	d, err := s.cfg.Templates.GetTemplate(r.Context(), r.PathValue("namespace"), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		s.templateError(w, err)
		return
	}
	if a := s.cfg.TemplateAccess; a != nil && d.Template.Template != nil && !a.ShowInitialization(r) {
		d.Template.Template = withoutInitialization(d.Template.Template)
	}
	writeJSON(w, http.StatusOK, d)
}

// withoutInitialization returns a copy of t whose handlers and environment overrides carry no
// initialization (it may hold credentials).
func withoutInitialization(t *template.TaskTemplate) *template.TaskTemplate {
	c := *t
	c.Steps = slices.Clone(t.Steps)
	for i := range c.Steps {
		c.Steps[i].Handler.Initialization = nil
	}
	c.Environments = make(map[string]template.EnvironmentOverride, len(t.Environments))
	for name, env := range t.Environments {
		env.Steps = slices.Clone(env.Steps)
		for i, so := range env.Steps {
			if so.Handler != nil {
				h := *so.Handler
				h.Initialization = nil
				env.Steps[i].Handler = &h
			}
		}
		c.Environments[name] = env
	}
	if t.Environments == nil {
		c.Environments = nil
	}
	return &c
}

// templateError maps errors to tasker-core's codes: template_not_found (404),
// namespace_not_supported (400), internal_error (500).
func (s *Server) templateError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, template.ErrTemplateNotFound), errors.Is(err, template.ErrNoConfiguration):
		writeError(w, http.StatusNotFound, "template_not_found", "Template not found: "+err.Error())
	case errors.Is(err, ErrNamespaceNotSupported):
		writeError(w, http.StatusBadRequest, "namespace_not_supported", err.Error())
	default:
		s.log.Error("templates API failed", "error", err)
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
	}
}
