package web

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestWebWriteTextFormat(t *testing.T) {
	fams := []Family{
		{Name: "t_info", Help: "Build info.\nSecond line with \\ backslash.", Type: Gauge,
			Samples: []Sample{{Labels: []Label{{"version", `v1 "quoted" \ and` + "\nnewline"}, {"id", "w"}}, Value: 1}}},
		{Name: "t_done_total", Help: "Done.", Type: Counter, Samples: []Sample{
			{Labels: []Label{{"namespace", "a"}}, Value: 3},
			{Labels: []Label{{"namespace", "b"}}, Value: 1e21},
		}},
		{Name: "t_special", Help: "Specials.", Type: Gauge, Samples: []Sample{{Value: math.Inf(1)}, {Value: math.Inf(-1)}, {Value: math.NaN()}, {Value: 0.25}}},
		{Name: "t_empty", Help: "No samples yet.", Type: Counter},
		{Name: "t_seconds", Help: "Durations.", Type: Histogram, Histograms: []HistogramSample{
			{Labels: []Label{{"handler", "h"}}, Bounds: []float64{0.1, 1}, Cumulative: []int64{1, 2}, Count: 3, Sum: 5.5},
			{Bounds: []float64{0.1, 1}, Cumulative: []int64{0, 0}, Count: 0, Sum: 0},
		}},
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, fams); err != nil {
		t.Fatal(err)
	}
	want := `# HELP t_info Build info.\nSecond line with \\ backslash.
# TYPE t_info gauge
t_info{version="v1 \"quoted\" \\ and\nnewline",id="w"} 1
# HELP t_done_total Done.
# TYPE t_done_total counter
t_done_total{namespace="a"} 3
t_done_total{namespace="b"} 1e+21
# HELP t_special Specials.
# TYPE t_special gauge
t_special +Inf
t_special -Inf
t_special NaN
t_special 0.25
# HELP t_empty No samples yet.
# TYPE t_empty counter
# HELP t_seconds Durations.
# TYPE t_seconds histogram
t_seconds_bucket{handler="h",le="0.1"} 1
t_seconds_bucket{handler="h",le="1"} 2
t_seconds_bucket{handler="h",le="+Inf"} 3
t_seconds_sum{handler="h"} 5.5
t_seconds_count{handler="h"} 3
t_seconds_bucket{le="0.1"} 0
t_seconds_bucket{le="1"} 0
t_seconds_bucket{le="+Inf"} 0
t_seconds_sum 0
t_seconds_count 0
`
	if got := buf.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWebWriteTextRejectsInvalid(t *testing.T) {
	h := func(bounds []float64, cum []int64, count int64) Family {
		return Family{Name: "h", Type: Histogram, Histograms: []HistogramSample{{Bounds: bounds, Cumulative: cum, Count: count}}}
	}
	cases := map[string][]Family{
		"bad name":          {{Name: "1abc", Type: Gauge}},
		"dash in name":      {{Name: "a-b", Type: Gauge}},
		"bad label":         {{Name: "a", Type: Gauge, Samples: []Sample{{Labels: []Label{{"bad-label", "x"}}}}}},
		"reserved label":    {{Name: "a", Type: Gauge, Samples: []Sample{{Labels: []Label{{"__name__", "x"}}}}}},
		"le on histogram":   {{Name: "a", Type: Histogram, Histograms: []HistogramSample{{Labels: []Label{{"le", "1"}}}}}},
		"duplicate family":  {{Name: "a", Type: Gauge}, {Name: "a", Type: Counter}},
		"unknown type":      {{Name: "a", Type: "summary"}},
		"count mismatch":    {h([]float64{1, 2}, []int64{1}, 1)},
		"not cumulative":    {h([]float64{1, 2}, []int64{2, 1}, 2)},
		"bounds descend":    {h([]float64{2, 1}, []int64{1, 1}, 1)},
		"bucket over count": {h([]float64{1}, []int64{5}, 1)},
		"gauge histograms":  {{Name: "a", Type: Gauge, Histograms: []HistogramSample{{}}}},
		"histogram samples": {{Name: "a", Type: Histogram, Samples: []Sample{{}}}},
	}
	for name, fams := range cases {
		var buf bytes.Buffer
		if err := WriteText(&buf, fams); err == nil {
			t.Errorf("%s: accepted:\n%s", name, buf.String())
		} else if !strings.HasPrefix(err.Error(), "web: ") {
			t.Errorf("%s: error %q", name, err)
		}
	}
}
