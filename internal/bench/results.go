package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Metric is one reported figure: its value in each run and their median.
type Metric struct {
	Key     string    `json:"key"`
	Section string    `json:"section"`
	Label   string    `json:"label"`
	Unit    string    `json:"unit"`
	Values  []float64 `json:"values"`
	Median  float64   `json:"median"`
}

// Results is everything one tasker-bench run measured; it is what the JSON file holds.
type Results struct {
	Started     time.Time     `json:"started"`
	Finished    time.Time     `json:"finished"`
	Config      Config        `json:"config"`
	Environment Environment   `json:"environment"`
	Metrics     []Metric      `json:"metrics"`
	SQL         []SQLProfile  `json:"sql_profiles,omitempty"`
	Soak        *SoakResult   `json:"memory_soak,omitempty"`
	River       []riverResult `json:"river_peer_runs,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
}

// Environment describes the machine, the Go runtime and the server.
type Environment struct {
	GoVersion  string     `json:"go_version"`
	NumCPU     int        `json:"num_cpu"`
	GOMAXPROCS int        `json:"gomaxprocs"`
	CPUModel   string     `json:"cpu_model"`
	Server     serverInfo `json:"server"`
	// ServerDurabilityOff is the second server of --durability=both (its figures' keys start
	// with DurabilityOffKeyPrefix).
	ServerDurabilityOff *serverInfo `json:"server_durability_off,omitempty"`
}

// DurabilityOffKeyPrefix starts the key of every figure measured on a server without
// durability, and durabilityOffSection the name of its section, so such figures are never
// read as the durable ones.
const (
	DurabilityOffKeyPrefix = "durability_off."
	durabilityOffSection   = "9. durability off · "
)

// recorder collects metric values across runs, keeping first-seen order.
type recorder struct {
	metrics []*Metric
	byKey   map[string]*Metric
	// keyPrefix and sectionPrefix are put before the key and section of what is added (the
	// non-durable pass).
	keyPrefix, sectionPrefix string
}

func newRecorder() *recorder { return &recorder{byKey: map[string]*Metric{}} }

func (r *recorder) add(section, key, label, unit string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	key, section = r.keyPrefix+key, r.sectionPrefix+section
	m := r.byKey[key]
	if m == nil {
		m = &Metric{Key: key, Section: section, Label: label, Unit: unit}
		r.byKey[key] = m
		r.metrics = append(r.metrics, m)
	}
	m.Values = append(m.Values, v)
}

func (r *recorder) median(key string) (float64, bool) {
	m := r.byKey[r.keyPrefix+key]
	if m == nil || len(m.Values) == 0 {
		return 0, false
	}
	return median(m.Values), true
}

// finish computes the medians and orders the metrics by section (sections are numbered),
// keeping first-seen order within a section.
func (r *recorder) finish() []Metric {
	out := make([]Metric, len(r.metrics))
	for i, m := range r.metrics {
		m.Median = median(m.Values)
		out[i] = *m
	}
	slices.SortStableFunc(out, func(a, b Metric) int { return strings.Compare(a.Section, b.Section) })
	return out
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile is the nearest-rank percentile p (0..100) of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// printTable writes the metrics grouped by section: median, unit and every run's value.
func printTable(w io.Writer, ms []Metric) error {
	width := 0
	for _, m := range ms {
		width = max(width, utf8.RuneCountInString(m.Label))
	}
	section := ""
	for _, m := range ms {
		if m.Section != section {
			section = m.Section
			if _, err := fmt.Fprintf(w, "\n%s\n", strings.ToUpper(section)); err != nil {
				return err
			}
		}
		runs := make([]string, len(m.Values))
		for i, v := range m.Values {
			runs[i] = formatValue(v)
		}
		pad := width - utf8.RuneCountInString(m.Label)
		if _, err := fmt.Fprintf(w, "  %s%s %10s %-8s runs: %s\n", m.Label, strings.Repeat(" ", pad), formatValue(m.Median), m.Unit,
			strings.Join(runs, " ")); err != nil {
			return err
		}
	}
	return nil
}

func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "-"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// writeJSON writes the results to path, creating its directory.
func writeJSON(path string, r *Results) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
