package integration

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/web"
)

// webRegisterTemplate registers, through template.Register, the template the fixture's named
// task "<ns>_task" v0.1.0 will use: one step "square" handled by callable.
func webRegisterTemplate(t *testing.T, pool *pgxpool.Pool, ns, callable string) {
	t.Helper()
	ctx := context.Background()
	yaml := `
name: ` + ns + `_task
namespace_name: ` + ns + `
version: 0.1.0
description: web endpoint test template
steps:
  - name: square
    handler:
      callable: ` + callable + `
`
	tt, err := template.Parse([]byte(yaml), "web_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := template.Register(ctx, tx, tt); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// webGet fetches base+path and returns the status and body.
func webGet(t *testing.T, base, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func webJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return m
}

// webParseMetrics parses a /metrics body with expfmt's text parser (as Prometheus would) and
// returns the families by name and every sample keyed by its series text, labels in name order:
// name{a="x",b="y"}, and for histograms name_bucket{...,le="…"}, name_sum and name_count.
func webParseMetrics(t *testing.T, text string) (map[string]*dto.MetricFamily, map[string]float64) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, text)
	}
	samples := map[string]float64{}
	add := func(series string, v float64) {
		if _, dup := samples[series]; dup {
			t.Fatalf("duplicate series %s", series)
		}
		samples[series] = v
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			slices.Sort(labels)
			series := func(suffix string, extra ...string) string {
				ls := append(slices.Clone(labels), extra...)
				if len(ls) == 0 {
					return name + suffix
				}
				return name + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(series(""), m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(series(""), m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					if math.IsInf(b.GetUpperBound(), 1) {
						le = "+Inf"
					}
					add(series("_bucket", `le="`+le+`"`), float64(b.GetCumulativeCount()))
				}
				add(series("_sum"), h.GetSampleSum())
				add(series("_count"), float64(h.GetSampleCount()))
			default:
				add(series(""), m.GetUntyped().GetValue())
			}
		}
	}
	return fams, samples
}

// webWaitStatus polls path until it answers want.
func webWaitStatus(t *testing.T, base, path string, want int, within time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := webGet(t, base, path)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answered %d after %s, want %d: %s", path, code, within, want, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWebWorkerEndpoints(t *testing.T) {
	url, pool := testdb.New(t)
	const ns = "web_e2e"
	ctx := context.Background()
	webRegisterTemplate(t, pool, ns, "web_square")
	f := newTaskWithSteps(t, pool, ns, []string{"square"}, nil)
	initTransitions(t, pool, f)

	reg := handlers.NewRegistry()
	reg.MustRegister("web_square", handlers.HandlerFunc(func(ctx context.Context, s *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"result": 36}, nil)
	}))
	run := wkStart(t, pool, ns, reg, nil)

	// The web server has its own pool, so closing it below leaves the worker alone.
	webPool, err := db.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(webPool.Close)
	srv := web.NewWorker(web.ForWorker(run.w, webPool, reg, "127.0.0.1:0", "v-test"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	base := "http://" + srv.Addr()
	workerID := run.w.Config().WorkerID

	// Ready once the worker created its queues.
	ready := webJSON(t, webWaitStatus(t, base, "/health/ready", 200, 10*time.Second))
	if ready["status"] != "ready" || ready["worker_id"] != workerID {
		t.Fatalf("ready = %v", ready)
	}
	for _, c := range []string{"database", "queues", "pool"} {
		if st := ready["checks"].(map[string]any)[c].(map[string]any)["status"]; st != "healthy" {
			t.Fatalf("check %s = %v", c, st)
		}
	}

	wkEnqueue(t, pool, ns, f, "square")
	wkWaitState(t, pool, f.Step(t, "square"), state.StepEnqueuedForOrchestration, 10*time.Second)

	code, body := webGet(t, base, "/health")
	if h := webJSON(t, body); code != 200 || h["status"] != "healthy" || h["worker_id"] != workerID || h["timestamp"] == nil {
		t.Fatalf("/health = %d %s", code, body)
	}
	code, body = webGet(t, base, "/health/live")
	if h := webJSON(t, body); code != 200 || h["status"] != "alive" {
		t.Fatalf("/health/live = %d %s", code, body)
	}

	// The completed counter moves right after the completion commits; poll for it.
	series := `tasker_worker_steps_completed_total{handler="web_square",namespace="web_e2e"}`
	var (
		fams map[string]*dto.MetricFamily
		m    map[string]float64
	)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body = webGet(t, base, "/metrics")
		if code != 200 {
			t.Fatalf("/metrics = %d %s", code, body)
		}
		fams, m = webParseMetrics(t, string(body))
		if m[series] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The step is done and no other message comes: the snapshot's counters are settled.
	snap := run.w.Metrics().Snapshot()
	if len(snap.Steps) != 1 {
		t.Fatalf("snapshot steps = %+v", snap.Steps)
	}
	st := snap.Steps[0]
	for s, want := range map[string]float64{
		series: 1,
		`tasker_worker_steps_failed_total{handler="web_square",namespace="web_e2e"}`:                        0,
		`tasker_worker_info{version="v-test",worker_id="` + workerID + `"}`:                                 1,
		`tasker_worker_steps_claimed_total`:                                                                 1,
		`tasker_worker_step_results_committed_total{result="success"}`:                                      1,
		`tasker_worker_step_results_committed_total{result="failure"}`:                                      0,
		`tasker_worker_handler_duration_seconds_count{handler="web_square",namespace="web_e2e"}`:            1,
		`tasker_worker_handler_duration_seconds_bucket{handler="web_square",namespace="web_e2e",le="+Inf"}`: 1,
		`tasker_worker_handler_duration_seconds_bucket{handler="web_square",namespace="web_e2e",le="60"}`:   1,
		`tasker_worker_handler_pool_capacity`:                                                               10,
		`tasker_worker_handler_pool_in_use`:                                                                 0,
		`tasker_worker_queue_depth{namespace="web_e2e"}`:                                                    0,
		`tasker_worker_queue_metrics_up`:                                                                    1,
		`tasker_worker_messages_malformed_total`:                                                            0,
		`tasker_worker_late_completions_rejected_total`:                                                     0,
	} {
		if got, ok := m[s]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", s, got, ok, want)
		}
	}
	// The same values as the worker's own snapshot.
	for s, want := range map[string]float64{
		`tasker_worker_steps_claimed_total`:                                                      float64(snap.Claimed),
		`tasker_worker_messages_read_total`:                                                      float64(snap.MessagesRead),
		`tasker_worker_step_results_committed_total{result="success"}`:                           float64(snap.Completed),
		`tasker_worker_steps_completed_total{handler="web_square",namespace="web_e2e"}`:          float64(st.Completed),
		`tasker_worker_handler_duration_seconds_sum{handler="web_square",namespace="web_e2e"}`:   st.SumSeconds,
		`tasker_worker_handler_duration_seconds_count{handler="web_square",namespace="web_e2e"}`: float64(st.Count),
	} {
		if got, ok := m[s]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want the snapshot's %v", s, got, ok, want)
		}
	}
	for i, b := range []string{"0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60"} {
		s := `tasker_worker_handler_duration_seconds_bucket{handler="web_square",namespace="web_e2e",le="` + b + `"}`
		if got, ok := m[s]; !ok || got != float64(st.Buckets[i]) {
			t.Errorf("%s = %v (present %v), want the snapshot's %d", s, got, ok, st.Buckets[i])
		}
	}
	for name, typ := range map[string]dto.MetricType{
		"tasker_worker_info":                        dto.MetricType_GAUGE,
		"tasker_worker_steps_completed_total":       dto.MetricType_COUNTER,
		"tasker_worker_handler_duration_seconds":    dto.MetricType_HISTOGRAM,
		"tasker_worker_queue_last_read_age_seconds": dto.MetricType_GAUGE,
		"tasker_worker_wakeups_total":               dto.MetricType_COUNTER,
		"go_goroutines":                             dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                 dto.MetricType_COUNTER,
		"process_start_time_seconds":                dto.MetricType_GAUGE,
		"promhttp_metric_handler_requests_total":    dto.MetricType_COUNTER,
	} {
		if f := fams[name]; f == nil || f.GetType() != typ {
			t.Errorf("family %s = %v, want type %v", name, f, typ)
		}
	}
	// The step's message came either from a read or inside its notification.
	if got := m["tasker_worker_messages_read_total"] + m[`tasker_worker_notified_claims_total{outcome="claimed"}`]; got != 1 {
		t.Errorf("messages read + claimed from notifications = %v, want 1", got)
	}
	if m["tasker_worker_uptime_seconds"] <= 0 || m["tasker_worker_db_pool_max"] <= 0 || m["go_goroutines"] <= 0 ||
		m["process_start_time_seconds"] <= 0 {
		t.Errorf("uptime %v, db pool max %v, goroutines %v, process start %v", m["tasker_worker_uptime_seconds"],
			m["tasker_worker_db_pool_max"], m["go_goroutines"], m["process_start_time_seconds"])
	}
	if _, ok := m[`tasker_worker_queue_last_read_age_seconds{queue="worker_web_e2e_queue"}`]; !ok {
		t.Error("no last read age for the worker queue")
	}

	// A scraper asking for OpenMetrics gets it.
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	om, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") ||
		!strings.HasSuffix(string(om), "# EOF\n") || !strings.Contains(string(om), "\n"+series+" 1.0\n") {
		t.Errorf("OpenMetrics scrape: %v %q\n%s", err, resp.Header.Get("Content-Type"), om)
	}

	// Templates: the registered template, its handler, and the registry's names.
	code, body = webGet(t, base, "/v1/templates")
	var list web.TemplateList
	if err := json.Unmarshal(body, &list); code != 200 || err != nil {
		t.Fatalf("/v1/templates = %d %s (%v)", code, body, err)
	}
	if list.TemplateCount != 1 || len(list.Templates) != 1 || strings.Join(list.SupportedNamespaces, ",") != ns ||
		strings.Join(list.RegisteredHandlers, ",") != "web_square" {
		t.Fatalf("list = %+v", list)
	}
	if tt := list.Templates[0]; tt.Namespace != ns || tt.Name != ns+"_task" || tt.Version != "0.1.0" || tt.StepCount != 1 ||
		strings.Join(tt.Handlers, ",") != "web_square" || tt.Description == nil || *tt.Description != "web endpoint test template" {
		t.Fatalf("template = %+v", tt)
	}
	code, body = webGet(t, base, "/v1/templates/"+ns+"/"+ns+"_task/0.1.0")
	d := webJSON(t, body)
	if code != 200 || d["template"].(map[string]any)["template"].(map[string]any)["name"] != ns+"_task" ||
		d["handler_metadata"].(map[string]any)["namespace"] != ns {
		t.Fatalf("detail = %d %s", code, body)
	}
	if h := d["handlers"].([]any)[0].(map[string]any); h["callable"] != "web_square" || h["registered"] != true {
		t.Fatalf("detail handlers = %v", d["handlers"])
	}
	if code, body = webGet(t, base, "/v1/templates/"+ns+"/nope/1.0.0"); code != 404 || webJSON(t, body)["error"] != "template_not_found" {
		t.Fatalf("missing template = %d %s", code, body)
	}
	if code, body = webGet(t, base, "/v1/templates?namespace=elsewhere"); code != 400 {
		t.Fatalf("unsupported namespace = %d %s", code, body)
	}

	// The database going away makes the worker unready; metrics still answer.
	webPool.Close()
	body = webWaitStatus(t, base, "/health/ready", 503, 5*time.Second)
	nr := webJSON(t, body)
	if nr["error"] != "service_unavailable" || nr["message"] != "Worker is not ready to process steps" ||
		nr["checks"].(map[string]any)["database"].(map[string]any)["status"] != "unhealthy" {
		t.Fatalf("not ready = %s", body)
	}
	code, body = webGet(t, base, "/metrics")
	if _, m := webParseMetrics(t, string(body)); code != 200 || m["tasker_worker_queue_metrics_up"] != 0 || m[series] != 1 {
		t.Fatalf("metrics without database = %d %s", code, body)
	}
	if code, _ := webGet(t, base, "/health/live"); code != 200 {
		t.Fatalf("live without database = %d", code)
	}

	// Shutdown: readiness flips to 503 at once, then the server stops.
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/ready", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"shutdown"`) {
		t.Fatalf("ready after shutdown = %d %s", rec.Code, rec.Body)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Fatal("server still answers after Shutdown")
	}
}

// TestWebReadinessFlipsWhenShutdownBegins checks the drain window: readiness is 503 as soon as
// BeginShutdown is called while the server still answers.
func TestWebReadinessFlipsWhenShutdownBegins(t *testing.T) {
	_, pool := testdb.New(t)
	const ns = "web_drain"
	reg := handlers.NewRegistry()
	run := wkStart(t, pool, ns, reg, nil)
	srv := web.NewWorker(web.ForWorker(run.w, pool, reg, "127.0.0.1:0", "v-test"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	base := "http://" + srv.Addr()
	webWaitStatus(t, base, "/health/ready", 200, 10*time.Second)
	srv.BeginShutdown()
	body := webWaitStatus(t, base, "/health/ready", 503, time.Second)
	if c := webJSON(t, body)["checks"].(map[string]any)["shutdown"].(map[string]any); c["status"] != "unhealthy" {
		t.Fatalf("shutdown check = %v", c)
	}
	if code, _ := webGet(t, base, "/health"); code != 200 {
		t.Fatalf("/health while draining = %d", code)
	}
}
