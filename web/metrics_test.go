package web

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-go/tasker/queue"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines to log into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func getAccept(t *testing.T, h http.Handler, accept string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", accept)
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.String()
}

// TestWebMetricsOpenMetrics: a scraper asking for OpenMetrics gets it, terminated by # EOF, with
// the worker's values and the Go runtime and process collectors.
func TestWebMetricsOpenMetrics(t *testing.T) {
	var dbDown atomic.Bool
	s, _, _ := testWorkerServer(t, &dbDown)
	code, hdr, text := getAccept(t, s.Handler(), "application/openmetrics-text; version=1.0.0")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("%d %q", code, hdr.Get("Content-Type"))
	}
	if !strings.HasSuffix(text, "# EOF\n") {
		t.Fatalf("no # EOF terminator:\n%s", text[max(0, len(text)-200):])
	}
	for _, line := range []string{
		"# TYPE tasker_worker_steps_claimed counter", // OpenMetrics names the counter family without _total
		"tasker_worker_steps_claimed_total 5.0",
		`tasker_worker_steps_completed_total{handler="charge",namespace="billing"} 4.0`,
		"# TYPE tasker_worker_handler_duration_seconds histogram",
		`tasker_worker_handler_duration_seconds_bucket{handler="charge",namespace="billing",le="60.0"} 5`,
		`tasker_worker_handler_duration_seconds_count{handler="charge",namespace="billing"} 5`,
		`tasker_worker_info{version="v0.1.0-test",worker_id="worker_0190a000-0000-7000-8000-000000000001"} 1.0`,
		"# TYPE go_goroutines gauge",
		"# TYPE process_cpu_seconds counter",
		"# TYPE process_resident_memory_bytes gauge",
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("missing %q", line)
		}
	}
	// Without an Accept header: the Prometheus text format, no EOF marker.
	_, hdr, text = getAccept(t, s.Handler(), "")
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") || strings.Contains(text, "# EOF") ||
		!strings.Contains(text, "\ngo_goroutines ") {
		t.Fatalf("text format: %q", hdr.Get("Content-Type"))
	}
}

// TestWebMetricsRegistryPerServer: servers in one process each serve their own metrics from
// their own registry; nothing is registered in the global default registry.
func TestWebMetricsRegistryPerServer(t *testing.T) {
	var dbDown atomic.Bool
	a, _, _ := testWorkerServer(t, &dbDown)
	b, statsB, _ := testWorkerServer(t, &dbDown)
	statsB.snap.Claimed = 42
	orch := New(Config{Collectors: []prometheus.Collector{
		ReadAgeCollector("tasker_orchestrator_queue_last_read_age_seconds", readAges{{Queue: queue.StepResultsQueue, Age: 1500 * time.Millisecond}}),
	}})
	if _, _, text := getAccept(t, a.Handler(), ""); !strings.Contains(text, "\ntasker_worker_steps_claimed_total 5\n") {
		t.Error("server a does not serve its own counter")
	}
	if _, _, text := getAccept(t, b.Handler(), ""); !strings.Contains(text, "\ntasker_worker_steps_claimed_total 42\n") {
		t.Error("server b does not serve its own counter")
	}
	_, _, text := getAccept(t, orch.Handler(), "")
	if !strings.Contains(text, `tasker_orchestrator_queue_last_read_age_seconds{queue="orchestration_step_results"} 1.5`+"\n") ||
		strings.Contains(text, "tasker_worker_") || !strings.Contains(text, "\ngo_goroutines ") {
		t.Errorf("orchestrator metrics:\n%s", text)
	}
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "tasker_") || strings.HasPrefix(f.GetName(), "promhttp_") {
			t.Errorf("%s registered in the global default registry", f.GetName())
		}
	}
}

type readAges []queue.ReadAge

func (r readAges) ReadAges(time.Time) []queue.ReadAge { return r }

// brokenCollector sends one good metric and one that fails.
type brokenCollector struct{}

var (
	goodDesc   = prometheus.NewDesc("t_good", "Good.", nil, nil)
	brokenDesc = prometheus.NewDesc("t_broken", "Broken.", nil, nil)
)

func (brokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- goodDesc; ch <- brokenDesc }

func (brokenCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(goodDesc, prometheus.GaugeValue, 3)
	ch <- prometheus.NewInvalidMetric(brokenDesc, errors.New("source unavailable"))
}

// TestWebMetricsCollectorErrorLogged: a failing collector leaves the rest of the scrape intact
// and its error goes to the server's slog logger, not the standard logger.
func TestWebMetricsCollectorErrorLogged(t *testing.T) {
	var logs syncBuffer
	s := New(Config{Collectors: []prometheus.Collector{brokenCollector{}}, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	code, _, text := getAccept(t, s.Handler(), "")
	if code != 200 || !strings.Contains(text, "\nt_good 3\n") || strings.Contains(text, "t_broken") ||
		!strings.Contains(text, "\ngo_goroutines ") {
		t.Fatalf("%d:\n%s", code, text)
	}
	// The error counter is gathered before it counts this scrape: the next one shows it.
	if _, _, text = getAccept(t, s.Handler(), ""); !strings.Contains(text, `promhttp_metric_handler_errors_total{cause="gathering"} 1`+"\n") {
		t.Errorf("gathering errors not counted:\n%s", text)
	}
	got := logs.String()
	if !strings.Contains(got, `"level":"ERROR"`) || !strings.Contains(got, "source unavailable") {
		t.Errorf("collector error not logged through slog: %q", got)
	}
}

// TestWebServerErrorLogIsSlog: net/http's own messages (here a handler panic) go to the server's
// slog logger at WARN, in its format.
func TestWebServerErrorLogIsSlog(t *testing.T) {
	var logs syncBuffer
	s := New(Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	s.mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("handler exploded") })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(t.Context())
	if resp, err := http.Get("http://" + s.Addr() + "/panic"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), "handler exploded") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "handler exploded") {
			line = l
		}
	}
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"level":"WARN"`) || !strings.Contains(line, `"msg":"http: panic serving`) {
		t.Fatalf("panic not logged as a slog JSON line: %q", logs.String())
	}
}
