package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/tasker-go/tasker/worker"
)

// SoakSample is one reading of the memory soak.
type SoakSample struct {
	At         float64 `json:"at_s"` // since the worker started
	Completed  int64   `json:"completed"`
	RSSKB      int64   `json:"rss_kb"`
	HeapAlloc  uint64  `json:"heap_alloc"`
	HeapInuse  uint64  `json:"heap_inuse"`
	Sys        uint64  `json:"sys"`
	Goroutines int     `json:"goroutines"`
}

// SoakResult is the memory soak: samples and the first- vs last-quarter comparison.
type SoakResult struct {
	Tasks          int          `json:"tasks"`
	Duration       float64      `json:"duration_s"`
	StepsPerSec    float64      `json:"steps_per_s"`
	Samples        []SoakSample `json:"samples"`
	FirstRSSKB     float64      `json:"first_quarter_rss_kb"`
	LastRSSKB      float64      `json:"last_quarter_rss_kb"`
	FirstHeap      float64      `json:"first_quarter_heap_inuse"`
	LastHeap       float64      `json:"last_quarter_heap_inuse"`
	FirstRate      float64      `json:"first_quarter_steps_per_s"`
	LastRate       float64      `json:"last_quarter_steps_per_s"`
	FirstGoroutine float64      `json:"first_quarter_goroutines"`
	LastGoroutine  float64      `json:"last_quarter_goroutines"`
	Flat           bool         `json:"flat"`
	Verdict        string       `json:"verdict"`
}

// soakTolerance is how much the last quarter's mean RSS and heap may exceed the first
// quarter's (relative, with an absolute floor of soakSlackBytes) for memory to count as flat.
const (
	soakTolerance  = 0.10
	soakSlackBytes = 4 << 20
)

// runSoak feeds MemoryTasks single-step tasks, runs them through an in-process worker, and
// samples RSS and heap every MemoryInterval.
func runSoak(ctx context.Context, d *database, cfg Config, out io.Writer, log *slog.Logger) (*SoakResult, error) {
	admin, err := d.pool(ctx, 4, nil)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	rows, err := registerNoop(ctx, admin)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "memory soak: feeding %d single-step tasks\n", cfg.MemoryTasks)
	if err := feedNoopTasks(ctx, admin, rows, cfg.MemoryTasks, 5000); err != nil {
		return nil, err
	}
	if _, err := admin.Exec(ctx, "ANALYZE"); err != nil {
		return nil, err
	}
	pool, err := d.pool(ctx, cfg.Concurrency+4, nil)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	start := time.Now()
	nw, err := startNoopWorker(ctx, d.url, pool, cfg.Concurrency, log)
	if err != nil {
		return nil, err
	}
	res := &SoakResult{Tasks: cfg.MemoryTasks}
	sample := func() SoakSample {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := SoakSample{At: time.Since(start).Seconds(), Completed: nw.w.Metrics().Snapshot().Completed,
			RSSKB: procStatusKB(0, "VmRSS"), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, Sys: ms.Sys,
			Goroutines: runtime.NumGoroutine()}
		fmt.Fprintf(out, "  %7.1fs  completed %7d  rss %6.1f MiB  heap_alloc %6.1f MiB  heap_inuse %6.1f MiB  sys %6.1f MiB  goroutines %d\n",
			s.At, s.Completed, float64(s.RSSKB)/1024, mib(s.HeapAlloc), mib(s.HeapInuse), mib(s.Sys), s.Goroutines)
		return s
	}
	done := make(chan error, 1)
	go func() { done <- nw.waitFinished(ctx, worker.Snapshot{}, int64(cfg.MemoryTasks)) }()
	tick := time.NewTicker(cfg.MemoryInterval)
	defer tick.Stop()
	res.Samples = append(res.Samples, sample())
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case <-tick.C:
			res.Samples = append(res.Samples, sample())
		}
	}
	res.Samples = append(res.Samples, sample())
	res.Duration = time.Since(start).Seconds()
	if err := nw.shutdown(); err != nil && waitErr == nil {
		waitErr = err
	}
	if waitErr != nil {
		return res, waitErr
	}
	res.StepsPerSec = float64(cfg.MemoryTasks) / res.Duration
	summarizeSoak(res)
	return res, nil
}

// summarizeSoak compares the first and the last quarter of the run (by time).
func summarizeSoak(r *SoakResult) {
	q := r.Duration / 4
	var first, last []SoakSample
	for _, s := range r.Samples {
		switch {
		case s.At <= q:
			first = append(first, s)
		case s.At >= r.Duration-q:
			last = append(last, s)
		}
	}
	if len(first) == 0 || len(last) == 0 {
		r.Verdict = "too few samples to compare quarters (lower --memory-interval or run more tasks)"
		return
	}
	mean := func(ss []SoakSample, f func(SoakSample) float64) float64 {
		var t float64
		for _, s := range ss {
			t += f(s)
		}
		return t / float64(len(ss))
	}
	r.FirstRSSKB = mean(first, func(s SoakSample) float64 { return float64(s.RSSKB) })
	r.LastRSSKB = mean(last, func(s SoakSample) float64 { return float64(s.RSSKB) })
	r.FirstHeap = mean(first, func(s SoakSample) float64 { return float64(s.HeapInuse) })
	r.LastHeap = mean(last, func(s SoakSample) float64 { return float64(s.HeapInuse) })
	r.FirstGoroutine = mean(first, func(s SoakSample) float64 { return float64(s.Goroutines) })
	r.LastGoroutine = mean(last, func(s SoakSample) float64 { return float64(s.Goroutines) })
	rate := func(ss []SoakSample) float64 {
		if len(ss) < 2 || ss[len(ss)-1].At <= ss[0].At {
			return 0
		}
		return float64(ss[len(ss)-1].Completed-ss[0].Completed) / (ss[len(ss)-1].At - ss[0].At)
	}
	r.FirstRate, r.LastRate = rate(first), rate(last)
	grew := func(a, b float64) bool { return b > a*(1+soakTolerance) && b-a > soakSlackBytes }
	rssGrew := grew(r.FirstRSSKB*1024, r.LastRSSKB*1024)
	heapGrew := grew(r.FirstHeap, r.LastHeap)
	r.Flat = !rssGrew && !heapGrew
	r.Verdict = fmt.Sprintf("RSS %.1f → %.1f MiB (%+.1f%%), heap in use %.1f → %.1f MiB (%+.1f%%), goroutines %.0f → %.0f: ",
		r.FirstRSSKB/1024, r.LastRSSKB/1024, pct(r.FirstRSSKB, r.LastRSSKB), r.FirstHeap/(1<<20), r.LastHeap/(1<<20),
		pct(r.FirstHeap, r.LastHeap), r.FirstGoroutine, r.LastGoroutine)
	if r.Flat {
		r.Verdict += "memory is flat"
	} else {
		r.Verdict += fmt.Sprintf("memory GREW (more than %.0f%% and %d MiB from the first to the last quarter)", soakTolerance*100, soakSlackBytes>>20)
	}
}

func pct(a, b float64) float64 {
	if a == 0 {
		return 0
	}
	return 100 * (b - a) / a
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
