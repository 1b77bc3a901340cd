package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-go/tasker/queue"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/worker"
)

type fakeStats struct {
	snap     worker.Snapshot
	inFlight atomic.Int64
	readAge  atomic.Int64 // nanoseconds since the worker queue's last successful read
}

func (f *fakeStats) ReadAges(time.Time) []queue.ReadAge {
	return []queue.ReadAge{{Queue: "worker_billing_queue", Age: time.Duration(f.readAge.Load())}}
}

func (f *fakeStats) Snapshot() worker.Snapshot { s := f.snap; s.InFlight = f.inFlight.Load(); return s }
func (f *fakeStats) InFlight() int64           { return f.inFlight.Load() }

type fakeQueues struct {
	ms  []queue.Metrics
	err error
}

func (f *fakeQueues) MetricsAll(context.Context) ([]queue.Metrics, error) { return f.ms, f.err }

type fakeTemplates struct{}

func (fakeTemplates) ListTemplates(_ context.Context, ns string) (TemplateList, error) {
	if ns == "other" {
		return TemplateList{}, fmt.Errorf("%w: other", ErrNamespaceNotSupported)
	}
	return TemplateList{SupportedNamespaces: []string{"billing"}, TemplateCount: 1,
		Templates: []TemplateSummary{{Name: "charge", Namespace: "billing", Version: "1.0.0", StepCount: 2}}}, nil
}

func (fakeTemplates) GetTemplate(_ context.Context, ns, name, version string) (TemplateDetail, error) {
	switch name {
	case "missing":
		return TemplateDetail{}, fmt.Errorf("%w: %s/%s/%s", template.ErrTemplateNotFound, ns, name, version)
	case "broken":
		return TemplateDetail{}, errors.New("connection reset")
	}
	return TemplateDetail{HandlerMetadata: HandlerMetadata{Namespace: ns, Name: name, Version: version}}, nil
}

func testWorkerServer(t *testing.T, dbDown *atomic.Bool) (*Server, *fakeStats, *fakeQueues) {
	t.Helper()
	stats := &fakeStats{snap: worker.Snapshot{
		MessagesRead: 7, Claimed: 5, Completed: 4, Failed: 1, Malformed: 2, Recovered: 1, LateRejected: 3,
		DBErrors: 6, NotifyWakeups: 9, PollWakeups: 11, Uptime: 90 * time.Second,
		Steps: []worker.StepStats{{Namespace: "billing", Handler: "charge", Completed: 4, Failed: 1,
			Buckets: []int64{0, 0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5}, Count: 5, SumSeconds: 0.75}},
	}}
	qs := &fakeQueues{ms: []queue.Metrics{
		{Queue: "worker_billing_queue", Length: 12, VisibleLength: 10, OldestAge: 42 * time.Second},
		{Queue: queue.StepResultsQueue, Length: 1},
		{Queue: "worker_other_queue", Length: 99},
	}}
	db := PingerFunc(func(context.Context) error {
		if dbDown.Load() {
			return errors.New("connection refused")
		}
		return nil
	})
	s := NewWorker(WorkerOptions{
		WorkerID: "worker_0190a000-0000-7000-8000-000000000001", Version: "v0.1.0-test", Namespaces: []string{"billing"},
		Concurrency: 2, StaleReads: 30 * time.Second, Stats: stats, DB: db, Queues: qs, Templates: fakeTemplates{},
	})
	return s, stats, qs
}

func get(t *testing.T, h http.Handler, path string) (int, http.Header, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Header(), rec.Body.Bytes()
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return m
}

func TestWebHealthAndLiveness(t *testing.T) {
	var dbDown atomic.Bool
	s, _, _ := testWorkerServer(t, &dbDown)
	for path, status := range map[string]string{"/health": "healthy", "/health/live": "alive"} {
		code, hdr, body := get(t, s.Handler(), path)
		m := decode(t, body)
		if code != 200 || hdr.Get("Content-Type") != "application/json" || m["status"] != status ||
			m["worker_id"] != "worker_0190a000-0000-7000-8000-000000000001" {
			t.Fatalf("%s: %d %v", path, code, m)
		}
		if _, err := time.Parse(time.RFC3339Nano, m["timestamp"].(string)); err != nil {
			t.Fatalf("%s: timestamp %v", path, m["timestamp"])
		}
	}
	// Liveness stays up while the database is down and during shutdown.
	dbDown.Store(true)
	s.BeginShutdown()
	if code, _, _ := get(t, s.Handler(), "/health/live"); code != 200 {
		t.Fatalf("live = %d", code)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/health", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /health = %d", rec.Code)
	}
}

func TestWebReadiness(t *testing.T) {
	var dbDown atomic.Bool
	s, stats, qs := testWorkerServer(t, &dbDown)

	code, _, body := get(t, s.Handler(), "/health/ready")
	m := decode(t, body)
	if code != 200 || m["status"] != "ready" || m["worker_id"] == nil {
		t.Fatalf("ready: %d %s", code, body)
	}
	checks := m["checks"].(map[string]any)
	for _, name := range []string{"database", "queues", "pool", "reads"} {
		c, ok := checks[name].(map[string]any)
		if !ok || c["status"] != "healthy" || c["last_checked"] == nil || c["duration_ms"] == nil {
			t.Fatalf("check %s = %v", name, checks[name])
		}
	}
	if msg := checks["pool"].(map[string]any)["message"]; msg != "0 of 2 in use" {
		t.Fatalf("pool message %v", msg)
	}
	info := m["system_info"].(map[string]any)
	if info["version"] != "v0.1.0-test" || info["worker_type"] != "go" {
		t.Fatalf("system_info = %v", info)
	}

	notReady := func(why string, check string) {
		t.Helper()
		code, _, body := get(t, s.Handler(), "/health/ready")
		m := decode(t, body)
		if code != 503 || m["error"] != "service_unavailable" || m["message"] != "Worker is not ready to process steps" ||
			m["request_id"] != nil || m["timestamp"] == nil {
			t.Fatalf("%s: %d %s", why, code, body)
		}
		if _, has := m["request_id"]; !has {
			t.Fatalf("%s: request_id missing: %s", why, body)
		}
		c := m["checks"].(map[string]any)[check].(map[string]any)
		if c["status"] != "unhealthy" {
			t.Fatalf("%s: check %s = %v", why, check, c)
		}
	}

	stats.inFlight.Store(2)
	notReady("saturated pool", "pool")
	stats.inFlight.Store(1)

	// A fetch loop whose reads fail or hang: not ready while it has free slots.
	stats.readAge.Store(int64(45 * time.Second))
	notReady("no successful read for 45s", "reads")
	code, _, body = get(t, s.Handler(), "/health/ready")
	if msg := decode(t, body)["checks"].(map[string]any)["reads"].(map[string]any)["message"]; !strings.Contains(fmt.Sprint(msg), "worker_billing_queue 45s ago") {
		t.Fatalf("reads message %v", msg)
	}
	stats.inFlight.Store(2) // every slot busy: no read is due, so an old one is no fault
	_, _, body = get(t, s.Handler(), "/health/ready")
	if c := decode(t, body)["checks"].(map[string]any)["reads"].(map[string]any); c["status"] != "healthy" {
		t.Fatalf("reads with a saturated pool = %v", c)
	}
	stats.inFlight.Store(1)
	stats.readAge.Store(int64(time.Second))

	qs.ms = qs.ms[1:] // the worker queue disappears
	notReady("missing queue", "queues")
	qs.ms = append(qs.ms, queue.Metrics{Queue: "worker_billing_queue", Length: QueueBacklogDegraded})

	// A large backlog degrades but keeps the worker ready.
	code, _, body = get(t, s.Handler(), "/health/ready")
	if c := decode(t, body)["checks"].(map[string]any)["queues"].(map[string]any); code != 200 || c["status"] != "degraded" {
		t.Fatalf("backlog: %d %s", code, body)
	}
	code, _, body = get(t, s.Handler(), "/health/detailed")
	if m := decode(t, body); code != 200 || m["status"] != "degraded" {
		t.Fatalf("detailed: %d %s", code, body)
	}

	dbDown.Store(true)
	notReady("database down", "database")
	code, _, body = get(t, s.Handler(), "/health/detailed")
	if m := decode(t, body); code != 200 || m["status"] != "unhealthy" {
		t.Fatalf("detailed: %d %s", code, body)
	}
	dbDown.Store(false)

	if code, _, _ := get(t, s.Handler(), "/health/ready"); code != 200 {
		t.Fatalf("recovered: %d", code)
	}
	s.BeginShutdown()
	notReady("shutting down", "shutdown")
}

func TestWebReadinessCheckTimeoutAndPanic(t *testing.T) {
	s := New(Config{CheckTimeout: 50 * time.Millisecond, Checks: []Check{
		{Name: "slow", Run: func(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() }},
		{Name: "panics", Run: func(context.Context) (string, error) { panic("boom") }},
	}})
	start := time.Now()
	code, _, body := get(t, s.Handler(), "/health/ready")
	if code != 503 || time.Since(start) > 2*time.Second {
		t.Fatalf("%d after %s: %s", code, time.Since(start), body)
	}
	checks := decode(t, body)["checks"].(map[string]any)
	if !strings.Contains(checks["panics"].(map[string]any)["message"].(string), "panicked: boom") ||
		!strings.Contains(checks["slow"].(map[string]any)["message"].(string), "deadline exceeded") {
		t.Fatalf("checks = %v", checks)
	}
}

func TestWebWorkerMetrics(t *testing.T) {
	var dbDown atomic.Bool
	s, stats, qs := testWorkerServer(t, &dbDown)
	stats.inFlight.Store(1)
	stats.readAge.Store(int64(2500 * time.Millisecond))
	code, hdr, body := get(t, s.Handler(), "/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8") {
		t.Fatalf("%d %v", code, hdr)
	}
	text := string(body)
	for _, line := range []string{
		"# TYPE tasker_worker_info gauge",
		`tasker_worker_info{version="v0.1.0-test",worker_id="worker_0190a000-0000-7000-8000-000000000001"} 1`,
		"tasker_worker_uptime_seconds 90",
		"# TYPE tasker_worker_steps_claimed_total counter",
		"tasker_worker_steps_claimed_total 5",
		`tasker_worker_steps_completed_total{handler="charge",namespace="billing"} 4`,
		`tasker_worker_steps_failed_total{handler="charge",namespace="billing"} 1`,
		`tasker_worker_step_results_committed_total{result="success"} 4`,
		`tasker_worker_step_results_committed_total{result="failure"} 1`,
		"# TYPE tasker_worker_handler_duration_seconds histogram",
		`tasker_worker_handler_duration_seconds_bucket{handler="charge",namespace="billing",le="0.005"} 0`,
		`tasker_worker_handler_duration_seconds_bucket{handler="charge",namespace="billing",le="0.01"} 1`,
		`tasker_worker_handler_duration_seconds_bucket{handler="charge",namespace="billing",le="0.1"} 4`,
		`tasker_worker_handler_duration_seconds_bucket{handler="charge",namespace="billing",le="60"} 5`,
		`tasker_worker_handler_duration_seconds_bucket{handler="charge",namespace="billing",le="+Inf"} 5`,
		`tasker_worker_handler_duration_seconds_sum{handler="charge",namespace="billing"} 0.75`,
		`tasker_worker_handler_duration_seconds_count{handler="charge",namespace="billing"} 5`,
		"tasker_worker_handler_pool_in_use 1",
		"tasker_worker_handler_pool_capacity 2",
		`tasker_worker_queue_depth{namespace="billing"} 12`,
		`tasker_worker_queue_visible_depth{namespace="billing"} 10`,
		`tasker_worker_queue_oldest_message_age_seconds{namespace="billing"} 42`,
		"tasker_worker_queue_metrics_up 1",
		"# TYPE tasker_worker_queue_last_read_age_seconds gauge",
		`tasker_worker_queue_last_read_age_seconds{queue="worker_billing_queue"} 2.5`,
		`tasker_worker_wakeups_total{source="notify"} 9`,
		`tasker_worker_wakeups_total{source="poll"} 11`,
		"tasker_worker_db_errors_total 6",
		"tasker_worker_steps_recovered_total 1",
		"tasker_worker_late_completions_rejected_total 3",
		"tasker_worker_messages_malformed_total 2",
		"tasker_worker_messages_read_total 7",
		"# TYPE go_goroutines gauge",
		"# TYPE process_start_time_seconds gauge",
		`promhttp_metric_handler_requests_total{code="200"} 0`, // this scrape is counted once served
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("missing %q", line)
		}
	}
	if strings.Contains(text, `namespace="other"`) {
		t.Error("metrics of a queue the worker does not consume")
	}
	// Queue metrics failing does not fail the scrape.
	qs.err = errors.New("pgmq down")
	code, _, body = get(t, s.Handler(), "/metrics")
	if code != 200 || !strings.Contains(string(body), "tasker_worker_queue_metrics_up 0\n") ||
		strings.Contains(string(body), "tasker_worker_queue_depth") || !strings.Contains(string(body), "tasker_worker_steps_claimed_total 5\n") {
		t.Fatalf("%d:\n%s", code, body)
	}
}

func TestWebTemplateRoutes(t *testing.T) {
	var dbDown atomic.Bool
	s, _, _ := testWorkerServer(t, &dbDown)
	code, _, body := get(t, s.Handler(), "/v1/templates")
	if m := decode(t, body); code != 200 || m["template_count"] != 1.0 || m["supported_namespaces"].([]any)[0] != "billing" {
		t.Fatalf("list: %d %s", code, body)
	}
	code, _, body = get(t, s.Handler(), "/v1/templates?namespace=other")
	if m := decode(t, body); code != 400 || m["error"] != "namespace_not_supported" {
		t.Fatalf("unsupported: %d %s", code, body)
	}
	code, _, body = get(t, s.Handler(), "/v1/templates/billing/charge/1.0.0")
	if m := decode(t, body); code != 200 || m["handler_metadata"].(map[string]any)["version"] != "1.0.0" {
		t.Fatalf("get: %d %s", code, body)
	}
	code, _, body = get(t, s.Handler(), "/v1/templates/billing/missing/1.0.0")
	if m := decode(t, body); code != 404 || m["error"] != "template_not_found" || !strings.HasPrefix(m["message"].(string), "Template not found: ") {
		t.Fatalf("missing: %d %s", code, body)
	}
	code, _, body = get(t, s.Handler(), "/v1/templates/billing/broken/1.0.0")
	if m := decode(t, body); code != 500 || m["error"] != "internal_error" {
		t.Fatalf("broken: %d %s", code, body)
	}
	// Without a template source the routes do not exist.
	if code, _, _ := get(t, New(Config{}).Handler(), "/v1/templates"); code != 404 {
		t.Fatalf("no source: %d", code)
	}
}

func TestWebStartAndShutdown(t *testing.T) {
	release := make(chan struct{})
	s := New(Config{Addr: "127.0.0.1:0", Collectors: []prometheus.Collector{slowCollector{release}}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start accepted")
	}
	base := "http://" + s.Addr()
	resp, err := http.Get(base + "/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ready = %d", resp.StatusCode)
	}
	scraped := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			scraped <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		scraped <- string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	if !s.Draining() {
		t.Fatal("Shutdown did not flip readiness")
	}
	code, _, _ := get(t, s.Handler(), "/health/ready")
	if code != 503 {
		t.Fatalf("ready during shutdown = %d", code)
	}
	close(release)
	if got := <-scraped; !strings.Contains(got, "slow_total 1") {
		t.Fatalf("in-flight scrape lost: %q", got)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Fatal("server still answers after Shutdown")
	}
}

// slowCollector serves slow_total 1 once release is closed: a scrape in progress when shutdown
// begins.
type slowCollector struct{ release chan struct{} }

var slowDesc = prometheus.NewDesc("slow_total", "x", nil, nil)

func (slowCollector) Describe(ch chan<- *prometheus.Desc) { ch <- slowDesc }

func (c slowCollector) Collect(ch chan<- prometheus.Metric) {
	<-c.release
	ch <- prometheus.MustNewConstMetric(slowDesc, prometheus.CounterValue, 1)
}
