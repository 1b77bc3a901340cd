package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Metric types of the Prometheus text exposition format.
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
)

// ContentType is the media type of WriteText's output (Prometheus text format 0.0.4).
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Label is one name="value" pair of a sample.
type Label struct{ Name, Value string }

// Sample is one value of a counter or gauge family.
type Sample struct {
	Labels []Label
	Value  float64
}

// HistogramSample is one labelled histogram: Cumulative[i] counts the observations <= Bounds[i]
// (ascending, without +Inf); Count and Sum cover every observation.
type HistogramSample struct {
	Labels     []Label
	Bounds     []float64
	Cumulative []int64
	Count      int64
	Sum        float64
}

// Family is a metric with its HELP and TYPE and its samples: Samples for counters and gauges,
// Histograms for histograms.
type Family struct {
	Name       string
	Help       string
	Type       string
	Samples    []Sample
	Histograms []HistogramSample
}

// Collector produces metric families for /metrics. Collect is called once per scrape; it should
// report its own failures as samples (e.g. an _up gauge) rather than drop the whole scrape.
type Collector interface {
	Collect(ctx context.Context) []Family
}

// CollectorFunc adapts a function to Collector.
type CollectorFunc func(ctx context.Context) []Family

// Collect calls f.
func (f CollectorFunc) Collect(ctx context.Context) []Family { return f(ctx) }

// WriteText writes families in the Prometheus text exposition format. It checks metric and label
// names, escapes HELP text and label values, and writes histograms as _bucket (with le="+Inf"),
// _sum and _count series. A family name may appear once.
func WriteText(w io.Writer, families []Family) error {
	bw := bufio.NewWriter(w)
	seen := map[string]bool{}
	for _, f := range families {
		if err := checkFamily(f, seen); err != nil {
			return err
		}
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Type)
		switch f.Type {
		case Histogram:
			for _, h := range f.Histograms {
				for i, b := range h.Bounds {
					writeSample(bw, f.Name+"_bucket", h.Labels, &Label{"le", formatFloat(b)}, float64(h.Cumulative[i]))
				}
				writeSample(bw, f.Name+"_bucket", h.Labels, &Label{"le", "+Inf"}, float64(h.Count))
				writeSample(bw, f.Name+"_sum", h.Labels, nil, h.Sum)
				writeSample(bw, f.Name+"_count", h.Labels, nil, float64(h.Count))
			}
		default:
			for _, s := range f.Samples {
				writeSample(bw, f.Name, s.Labels, nil, s.Value)
			}
		}
	}
	return bw.Flush()
}

func checkFamily(f Family, seen map[string]bool) error {
	if !validMetricName(f.Name) {
		return fmt.Errorf("web: invalid metric name %q", f.Name)
	}
	if seen[f.Name] {
		return fmt.Errorf("web: metric %s written twice", f.Name)
	}
	seen[f.Name] = true
	labels := func(ls []Label) error {
		for _, l := range ls {
			if !validLabelName(l.Name) || l.Name == "le" && f.Type == Histogram {
				return fmt.Errorf("web: metric %s: invalid label name %q", f.Name, l.Name)
			}
		}
		return nil
	}
	switch f.Type {
	case Counter, Gauge:
		if len(f.Histograms) > 0 {
			return fmt.Errorf("web: %s %s has histogram samples", f.Type, f.Name)
		}
		for _, s := range f.Samples {
			if err := labels(s.Labels); err != nil {
				return err
			}
		}
	case Histogram:
		if len(f.Samples) > 0 {
			return fmt.Errorf("web: histogram %s has plain samples", f.Name)
		}
		for _, h := range f.Histograms {
			if err := labels(h.Labels); err != nil {
				return err
			}
			if len(h.Cumulative) != len(h.Bounds) {
				return fmt.Errorf("web: histogram %s: %d counts for %d bounds", f.Name, len(h.Cumulative), len(h.Bounds))
			}
			for i := range h.Bounds {
				if i > 0 && (h.Bounds[i] <= h.Bounds[i-1] || h.Cumulative[i] < h.Cumulative[i-1]) {
					return fmt.Errorf("web: histogram %s: bounds must ascend and counts be cumulative", f.Name)
				}
			}
			if n := len(h.Cumulative); n > 0 && h.Cumulative[n-1] > h.Count {
				return fmt.Errorf("web: histogram %s: a bucket exceeds the count", f.Name)
			}
		}
	default:
		return fmt.Errorf("web: metric %s has unknown type %q", f.Name, f.Type)
	}
	return nil
}

func writeSample(w *bufio.Writer, name string, labels []Label, extra *Label, v float64) {
	w.WriteString(name)
	if len(labels) > 0 || extra != nil {
		w.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.WriteByte(',')
			}
			writeLabel(w, l)
		}
		if extra != nil {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			writeLabel(w, *extra)
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

func writeLabel(w *bufio.Writer, l Label) {
	w.WriteString(l.Name)
	w.WriteString(`="`)
	w.WriteString(labelEscaper.Replace(l.Value))
	w.WriteByte('"')
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// formatFloat writes values as Prometheus does: +Inf, -Inf, NaN, and the shortest decimal
// otherwise.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
