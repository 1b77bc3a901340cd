package web

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry returns a registry of its own (never the global default one, so several servers
// can share a process) holding the Go runtime and process collectors and cs. It panics if a
// collector cannot be registered (a name described twice or inconsistently).
func newRegistry(cs []prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(cs...)
	return reg
}

// metricsHandler serves reg in the format the scraper negotiates: the Prometheus text format by
// default, OpenMetrics when asked for. A collector's error is logged and leaves the rest of the
// scrape intact; the handler's own request and error counters (promhttp_metric_handler_*) are
// registered in reg.
func metricsHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          reg,
		EnableOpenMetrics: true,
	}))
}

// ReadAgeCollector collects the gauge name{queue}: seconds since each of src's queues was last
// read successfully.
func ReadAgeCollector(name string, src ReadAgeSource) prometheus.Collector {
	return &readAgeCollector{
		desc: prometheus.NewDesc(name, "Seconds since the last successful read of the queue.", []string{"queue"}, nil),
		src:  src,
	}
}

type readAgeCollector struct {
	desc *prometheus.Desc
	src  ReadAgeSource
}

func (c *readAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *readAgeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.src.ReadAges(time.Now()) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, a.Age.Seconds(), a.Queue)
	}
}
