package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/protocol"
)

// ErrNoStepDefinition: the template has no step of the asked name.
var ErrNoStepDefinition = errors.New("template: template step definition not found")

// Cache keeps registered templates by named_task_uuid, refreshed when named_tasks.updated_at
// moves (a re-registration). The orchestrator reads whole templates from it (Get, Cached), a
// worker the step definitions it hands to handlers (StepDefinition); each form is decoded once
// per version. Cached templates are shared and must not be modified. Safe for concurrent use.
type Cache struct {
	mu sync.Mutex
	m  map[uuid.UUID]*cachedTemplate
}

type cachedTemplate struct {
	at  time.Time
	key string // namespace/name/version
	cfg []byte // named_tasks.configuration

	parseOnce sync.Once
	tmpl      *TaskTemplate
	parseErr  error

	stepsOnce sync.Once
	steps     map[string]protocol.StepDefinition
	stepsErr  error
}

func (c *Cache) lookup(namedTask uuid.UUID) *cachedTemplate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[namedTask]
}

// entry returns namedTask's cache entry at version at, reading named_tasks only when the cache
// does not hold that version (a zero at means "whatever is current": one read of updated_at,
// which returns the configuration only when it changed).
func (c *Cache) entry(ctx context.Context, q Querier, namedTask uuid.UUID, at time.Time) (*cachedTemplate, error) {
	ct := c.lookup(namedTask)
	if ct != nil && !at.IsZero() && ct.at.Equal(at) {
		return ct, nil
	}
	var known time.Time
	if ct != nil {
		known = ct.at
	}
	var (
		cur time.Time
		cfg []byte
		key string
	)
	err := q.QueryRow(ctx, `
		SELECT nt.updated_at,
		       CASE WHEN nt.updated_at = $2 THEN NULL ELSE nt.configuration END,
		       tn.name || '/' || nt.name || '/' || nt.version
		  FROM tasker.named_tasks nt
		  JOIN tasker.task_namespaces tn ON tn.task_namespace_uuid = nt.task_namespace_uuid
		 WHERE nt.named_task_uuid = $1`, namedTask, known).Scan(&cur, &cfg, &key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: named task %s", ErrTemplateNotFound, namedTask)
	}
	if err != nil {
		return nil, fmt.Errorf("template: load named task %s: %w", namedTask, err)
	}
	if ct != nil && ct.at.Equal(cur) {
		return ct, nil
	}
	ct = &cachedTemplate{at: cur, key: key, cfg: cfg}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[uuid.UUID]*cachedTemplate{}
	}
	c.m[namedTask] = ct
	c.mu.Unlock()
	return ct, nil
}

func (ct *cachedTemplate) empty() bool {
	return len(ct.cfg) == 0 || string(ct.cfg) == "{}" || string(ct.cfg) == "null"
}

func (ct *cachedTemplate) template() (*TaskTemplate, error) {
	ct.parseOnce.Do(func() {
		if ct.empty() {
			ct.parseErr = fmt.Errorf("%w: %s: %w", ErrTemplateNotFound, ct.key, ErrNoConfiguration)
			return
		}
		if ct.tmpl, ct.parseErr = ParseJSON(ct.cfg, "named_tasks "+ct.key); ct.parseErr != nil {
			ct.parseErr = fmt.Errorf("template: decode %s: %w", ct.key, ct.parseErr)
		}
	})
	return ct.tmpl, ct.parseErr
}

// Get returns namedTask's current template. Errors: ErrTemplateNotFound (no such named task, or
// one without configuration, then also ErrNoConfiguration), or a decode error.
func (c *Cache) Get(ctx context.Context, q Querier, namedTask uuid.UUID) (*TaskTemplate, error) {
	ct, err := c.entry(ctx, q, namedTask, time.Time{})
	if err != nil {
		return nil, err
	}
	return ct.template()
}

// Cached returns namedTask's template when the cache holds version at (named_tasks.updated_at)
// already decoded, else nil; it never reads the database.
func (c *Cache) Cached(namedTask uuid.UUID, at time.Time) *TaskTemplate {
	ct := c.lookup(namedTask)
	if ct == nil || !ct.at.Equal(at) {
		return nil
	}
	t, err := ct.template()
	if err != nil {
		return nil
	}
	return t
}

// StepDefinition returns the definition of the template step name of namedTask at version at
// (known from the step's own row), in the JSON shape tasker-core hands to handlers, reading
// named_tasks only when the cache does not hold that version. Errors: ErrNoConfiguration,
// ErrNoStepDefinition (retrying cannot help), or a read or decode error.
func (c *Cache) StepDefinition(ctx context.Context, q Querier, namedTask uuid.UUID, at time.Time, name string) (protocol.StepDefinition, error) {
	ct, err := c.entry(ctx, q, namedTask, at)
	if err != nil {
		return protocol.StepDefinition{}, err
	}
	ct.stepsOnce.Do(func() {
		if ct.empty() {
			ct.stepsErr = fmt.Errorf("%s: %w", ct.key, ErrNoConfiguration)
			return
		}
		var tmpl struct {
			Steps []protocol.StepDefinition `json:"steps"`
		}
		if err := json.Unmarshal(ct.cfg, &tmpl); err != nil {
			ct.stepsErr = fmt.Errorf("template: decode step definitions of %s: %w", ct.key, err)
			return
		}
		ct.steps = make(map[string]protocol.StepDefinition, len(tmpl.Steps))
		for _, s := range tmpl.Steps {
			ct.steps[s.Name] = s
		}
	})
	if ct.stepsErr != nil {
		return protocol.StepDefinition{}, ct.stepsErr
	}
	def, ok := ct.steps[name]
	if !ok {
		return protocol.StepDefinition{}, fmt.Errorf("%w: %q in %s", ErrNoStepDefinition, name, ct.key)
	}
	return def, nil
}
