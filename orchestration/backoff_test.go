package orchestration

import (
	"testing"
	"time"
)

// fixedJitter draws a fixed magnitude (clamped to the allowed range) and sign.
type fixedJitter struct {
	d   int64
	neg bool
	max int64 // the range asked for, recorded
}

func (f *fixedJitter) upTo(n int64) int64 { f.max = n; return min(f.d, n) }
func (f *fixedJitter) negative() bool     { return f.neg }

func TestComputeBackoffExponential(t *testing.T) {
	cfg := BackoffConfig{Base: time.Second, Max: 3600 * time.Second, Multiplier: 2, JitterPercent: NoJitter}
	for attempts, want := range map[int]int{0: 1, 1: 2, 2: 4, 3: 8, 11: 2048, 12: 3600, 40: 3600} {
		got, kind := computeBackoff(cfg, attempts, nil, time.Now(), &fixedJitter{})
		if got != want || kind != backoffExponential {
			t.Errorf("attempts %d: got %d (%s), want %d exponential", attempts, got, kind, want)
		}
	}
	// tasker-core's test environment: base 1, max 10.
	cfg.Max = 10 * time.Second
	if got, _ := computeBackoff(cfg, 4, nil, time.Now(), &fixedJitter{}); got != 10 {
		t.Errorf("capped: got %d, want 10", got)
	}
}

func TestComputeBackoffJitter(t *testing.T) {
	cfg := BackoffConfig{Base: time.Second, Max: 3600 * time.Second, Multiplier: 2, JitterPercent: 0.15}
	j := &fixedJitter{d: 1000}
	got, _ := computeBackoff(cfg, 5, nil, time.Now(), j) // 32s, jitter range floor(4.8) = 4
	if j.max != 4 || got != 36 {
		t.Fatalf("positive jitter: range %d got %d, want range 4 and 36", j.max, got)
	}
	j = &fixedJitter{d: 3, neg: true}
	if got, _ := computeBackoff(cfg, 5, nil, time.Now(), j); got != 29 {
		t.Fatalf("negative jitter: got %d, want 29", got)
	}
	// 2s * 0.15 = 0.3 → no jitter range at all.
	j = &fixedJitter{d: 1000}
	if got, _ := computeBackoff(cfg, 1, nil, time.Now(), j); got != 2 || j.max != 0 {
		t.Fatalf("small delay: got %d (range %d), want 2 without jitter", got, j.max)
	}
	// Jitter never pushes the delay above Max.
	cfg.Max = 100 * time.Second
	if got, _ := computeBackoff(cfg, 10, nil, time.Now(), &fixedJitter{d: 1000}); got != 100 {
		t.Fatalf("jitter above max: got %d, want 100", got)
	}
}

func TestComputeBackoffRetryAfter(t *testing.T) {
	cfg := BackoffConfig{Base: time.Second, Max: 60 * time.Second, Multiplier: 2, JitterPercent: 0.15}
	now := time.Date(2026, 3, 21, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		headers map[string]string
		want    int
		kind    string
	}{
		{"seconds", map[string]string{"Retry-After": "7"}, 7, backoffServerRequested},
		{"lowercase key", map[string]string{"retry-after": "5"}, 5, backoffServerRequested},
		{"upper key and spaces", map[string]string{"RETRY-AFTER": " 3 "}, 3, backoffServerRequested},
		{"capped", map[string]string{"Retry-After": "7200"}, 60, backoffServerRequested},
		{"zero", map[string]string{"Retry-After": "0"}, 0, backoffServerRequested},
		{"http date", map[string]string{"Retry-After": "Sat, 21 Mar 2026 12:00:30 GMT"}, 30, backoffServerRequested},
		{"rfc2822 numeric zone", map[string]string{"Retry-After": "Sat, 21 Mar 2026 13:00:20 +0100"}, 20, backoffServerRequested},
		{"date in the past", map[string]string{"Retry-After": "Sat, 21 Mar 2026 11:00:00 GMT"}, 4, backoffExponential},
		{"garbage", map[string]string{"Retry-After": "soon"}, 4, backoffExponential},
		{"negative", map[string]string{"Retry-After": "-5"}, 4, backoffExponential},
		{"other headers", map[string]string{"X-Retry": "9"}, 4, backoffExponential},
	}
	for _, c := range cases {
		got, kind := computeBackoff(cfg, 2, c.headers, now, &fixedJitter{})
		if got != c.want || kind != c.kind {
			t.Errorf("%s: got %d (%s), want %d (%s)", c.name, got, kind, c.want, c.kind)
		}
	}
}
