package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestMedianAndPercentile(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Fatalf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Fatalf("median even = %v", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Fatal("median of nothing must be NaN")
	}
	sorted := make([]float64, 100)
	for i := range sorted {
		sorted[i] = float64(i + 1)
	}
	for _, tc := range []struct{ p, want float64 }{{50, 50}, {95, 95}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]float64{7, 9}, 50); got != 7 {
		t.Errorf("nearest-rank p50 of two = %v, want 7", got)
	}
}

func TestRecorderKeepsRunsAndOrdersSections(t *testing.T) {
	r := newRecorder()
	r.add("3. e2e", "e2e.x", "x", "ms", 5)
	r.add("1. floor", "floor", "floor", "c/s", 100)
	r.add("3. e2e", "e2e.x", "x", "ms", 7)
	r.add("3. e2e", "e2e.x", "x", "ms", 6)
	r.add("1. floor", "floor", "floor", "c/s", math.NaN()) // dropped
	ms := r.finish()
	if len(ms) != 2 || ms[0].Key != "floor" || ms[1].Key != "e2e.x" {
		t.Fatalf("order: %+v", ms)
	}
	if ms[1].Median != 6 || len(ms[1].Values) != 3 || len(ms[0].Values) != 1 {
		t.Fatalf("values: %+v", ms)
	}
}

func TestPhasePath(t *testing.T) {
	for _, tc := range []struct{ path, phase, want string }{
		{"cpu.pprof", "worker", "cpu.worker.pprof"},
		{"/tmp/p/mem.out", "e2e-linear.base", "/tmp/p/mem.e2e-linear.base.out"},
		{"prof", "worker", "prof.worker"},
	} {
		if got := phasePath(tc.path, tc.phase); got != tc.want {
			t.Errorf("phasePath(%q, %q) = %q, want %q", tc.path, tc.phase, got, tc.want)
		}
	}
}

func TestDiffStatements(t *testing.T) {
	before := map[string]sqlStat{"a": {Calls: 2, Time: time.Millisecond}, "gone": {Calls: 1}}
	after := map[string]sqlStat{"a": {Calls: 6, Time: 5 * time.Millisecond}, "b": {Calls: 10}, "gone": {Calls: 1}}
	got := diffStatements(before, after, 2)
	if len(got) != 2 || got[0].SQL != "b" || got[1].SQL != "a" {
		t.Fatalf("got %+v", got)
	}
	if got[1].Calls != 4 || got[1].CallsPerStep != 2 || got[1].ClientMs != 4 || got[1].MsPerStep != 2 {
		t.Fatalf("a: %+v", got[1])
	}
}

func TestNormalizeSQLAndBegin(t *testing.T) {
	if got := normalizeSQL("SELECT  1\n\t FROM x "); got != "SELECT 1 FROM x" {
		t.Fatalf("normalizeSQL = %q", got)
	}
	for sql, want := range map[string]bool{"begin": true, " BEGIN ISOLATION LEVEL": true, "commit": false, "beg": false} {
		if isBegin(sql) != want {
			t.Errorf("isBegin(%q) = %v", sql, !want)
		}
	}
}

func TestBusyPercent(t *testing.T) {
	a, b := machineCPU{busy: 100, total: 1000}, machineCPU{busy: 400, total: 1600}
	if got := busyPercent(a, b); got != 50 {
		t.Fatalf("busy = %v", got)
	}
	if got := busyPercent(b, a); got != 0 {
		t.Fatalf("backwards readings = %v", got)
	}
}

func TestSummarizeSoak(t *testing.T) {
	mk := func(rssMiB float64, heap uint64) *SoakResult {
		r := &SoakResult{Duration: 100}
		for i := 0; i <= 100; i += 5 {
			r.Samples = append(r.Samples, SoakSample{At: float64(i), Completed: int64(i * 10),
				RSSKB: int64(rssMiB * 1024 * (1 + float64(i)/100)), HeapInuse: heap})
		}
		return r
	}
	flat := mk(30, 5<<20)
	for i := range flat.Samples {
		flat.Samples[i].RSSKB = 30 * 1024
	}
	summarizeSoak(flat)
	if !flat.Flat || !strings.Contains(flat.Verdict, "flat") || flat.FirstRate != 10 || flat.LastRate != 10 {
		t.Fatalf("flat run: %+v", flat)
	}
	grows := mk(100, 5<<20) // RSS doubles over the run
	summarizeSoak(grows)
	if grows.Flat || !strings.Contains(grows.Verdict, "GREW") {
		t.Fatalf("growing run judged flat: %s", grows.Verdict)
	}
	few := &SoakResult{Duration: 10, Samples: []SoakSample{{At: 5}}}
	summarizeSoak(few)
	if few.Flat || !strings.Contains(few.Verdict, "too few") {
		t.Fatalf("too few samples: %+v", few)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.Output = "x.json"
	if err := c.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	q := QuickConfig()
	q.Output = "x.json"
	if err := q.Validate(); err != nil || q.Runs != 1 {
		t.Fatalf("quick config: %v (runs %d)", err, q.Runs)
	}
	bad := DefaultConfig()
	bad.Runs, bad.Only, bad.Workflows = 0, []string{"nope"}, []string{"tree"}
	err := bad.Validate()
	for _, want := range []string{"runs", `phase "nope"`, `workflow "tree"`, "output"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestProcReaders(t *testing.T) {
	if procStatusKB(0, "VmRSS") <= 0 {
		t.Skip("no /proc on this system")
	}
	if procStatusKB(0, "NoSuchField") != 0 {
		t.Fatal("unknown field must read 0")
	}
	if readMachineCPU().total <= 0 {
		t.Fatal("no /proc/stat reading")
	}
	if selfCPU() <= 0 {
		t.Fatal("no CPU time for this process")
	}
}

func TestPrintTable(t *testing.T) {
	var b strings.Builder
	ms := []Metric{
		{Section: "1. floor", Label: "cycles/s", Unit: "c/s", Values: []float64{3000, 3100}, Median: 3050},
		{Section: "2. worker", Label: "steps/s (DB timestamps)", Unit: "steps/s", Values: []float64{0.5}, Median: 0.5},
	}
	if err := printTable(&b, ms); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"1. FLOOR\n", "2. WORKER\n", "3050", "runs: 3000 3100", "0.500", "steps/s (DB timestamps)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
