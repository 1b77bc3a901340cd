package template

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

// warmCache holds one named task at version at, as a read would have left it.
func warmCache(id uuid.UUID, at time.Time, cfg string) *Cache {
	return &Cache{m: map[uuid.UUID]*cachedTemplate{id: {at: at, key: "ns/t/1.0.0", cfg: []byte(cfg)}}}
}

const cacheTestConfig = `{"name": "t", "namespace_name": "ns", "version": "1.0.0",
  "steps": [{"name": "s1", "handler": {"callable": "c.one", "initialization": {"k": 1}}},
            {"name": "s2", "handler": {"callable": "c.two"}, "dependencies": ["s1"]}]}`

// A warm cache answers without a database (the querier is nil) and decodes each form once.
func TestCacheWarm(t *testing.T) {
	id, at := uuid.New(), time.Now()
	c := warmCache(id, at, cacheTestConfig)
	ctx := context.Background()
	def, err := c.StepDefinition(ctx, nil, id, at, "s1")
	if err != nil || def.Handler.Callable != "c.one" || string(def.Handler.Initialization["k"]) != "1" {
		t.Fatalf("s1 = %+v, %v", def, err)
	}
	if _, err := c.StepDefinition(ctx, nil, id, at, "nope"); !errors.Is(err, ErrNoStepDefinition) {
		t.Errorf("missing step: %v, want ErrNoStepDefinition", err)
	}
	tmpl := c.Cached(id, at)
	if tmpl == nil || tmpl.Step("s2") == nil || tmpl.Step("s2").Dependencies[0] != "s1" {
		t.Fatalf("Cached = %+v", tmpl)
	}
	if c.Cached(id, at.Add(time.Second)) != nil || c.Cached(uuid.New(), at) != nil {
		t.Error("Cached returned a template for another version or named task")
	}
	if c.Cached(id, at) != tmpl {
		t.Error("the template was decoded twice")
	}

	empty := warmCache(id, at, `{}`)
	if _, err := empty.StepDefinition(ctx, nil, id, at, "s1"); !errors.Is(err, ErrNoConfiguration) {
		t.Errorf("empty configuration: %v, want ErrNoConfiguration", err)
	}
	if empty.Cached(id, at) != nil {
		t.Error("Cached decoded an empty configuration")
	}
}

// BenchmarkStepDefinitionCacheHit is the template lookup of every claim on a warm cache.
func BenchmarkStepDefinitionCacheHit(b *testing.B) {
	id, at := uuid.New(), time.Now()
	c := warmCache(id, at, cacheTestConfig)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.StepDefinition(ctx, nil, id, at, "s2"); err != nil {
			b.Fatal(err)
		}
	}
}
