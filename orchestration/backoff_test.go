package orchestration

import (
	"testing"
	"time"

	"github.com/tasker-go/tasker/template"
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

func u64(v uint64) *uint64 { return &v }

func TestTemplatePolicySetOrNot(t *testing.T) {
	cfg := BackoffConfig{Base: time.Second, Max: time.Hour, Multiplier: 2}
	cases := []struct {
		name  string
		retry template.RetryConfiguration
		want  *stepPolicy
	}{
		{"no retry block (tasker-core defaults)", template.DefaultRetry(), nil},
		{"block without backoff fields", template.RetryConfiguration{Retryable: true, MaxAttempts: 5, Backoff: template.BackoffExponential}, nil},
		{"empty strategy, no fields", template.RetryConfiguration{Retryable: true, MaxAttempts: 5}, nil},
		{"50/200", template.RetryConfiguration{Backoff: template.BackoffExponential, BackoffBaseMs: u64(50), MaxBackoffMs: u64(200)},
			&stepPolicy{template.BackoffExponential, 50 * time.Millisecond, 200 * time.Millisecond}},
		{"base only", template.RetryConfiguration{Backoff: template.BackoffExponential, BackoffBaseMs: u64(1000)},
			&stepPolicy{template.BackoffExponential, time.Second, time.Hour}},
		{"max only", template.RetryConfiguration{MaxBackoffMs: u64(500)},
			&stepPolicy{template.BackoffExponential, time.Second, 500 * time.Millisecond}},
		{"default pair, other strategy", template.RetryConfiguration{Backoff: template.BackoffLinear, BackoffBaseMs: u64(1000), MaxBackoffMs: u64(30000)},
			&stepPolicy{template.BackoffLinear, time.Second, 30 * time.Second}},
		{"strategy only", template.RetryConfiguration{Backoff: template.BackoffNone},
			&stepPolicy{template.BackoffNone, time.Second, time.Hour}},
	}
	for _, c := range cases {
		got, ok := templatePolicy(c.retry, cfg)
		if (c.want == nil) != !ok || (ok && got != *c.want) {
			t.Errorf("%s: got %+v (set %v), want %+v", c.name, got, ok, c.want)
		}
	}
}

func TestStepPolicyDelay(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		strategy template.BackoffStrategy
		want     []time.Duration // after attempts 1, 2, 3, ...
	}{
		{template.BackoffExponential, []time.Duration{50 * ms, 100 * ms, 200 * ms, 200 * ms}},
		{template.BackoffLinear, []time.Duration{50 * ms, 100 * ms, 150 * ms, 200 * ms, 200 * ms}},
		{template.BackoffFibonacci, []time.Duration{50 * ms, 50 * ms, 100 * ms, 150 * ms, 200 * ms}},
		{template.BackoffNone, []time.Duration{50 * ms, 50 * ms, 50 * ms}},
	}
	for _, c := range cases {
		p := stepPolicy{strategy: c.strategy, base: 50 * ms, max: 200 * ms}
		for i, want := range c.want {
			if got := p.delay(i+1, 2); got != want {
				t.Errorf("%s after %d attempts: %s, want %s", c.strategy, i+1, got, want)
			}
		}
	}
	if got := (stepPolicy{strategy: template.BackoffFibonacci, base: ms, max: time.Hour}).delay(500, 2); got != time.Hour {
		t.Errorf("fibonacci overflow: %s, want the max", got)
	}
	if got := (stepPolicy{strategy: template.BackoffExponential, base: ms, max: time.Hour}).delay(0, 2); got != ms {
		t.Errorf("attempts 0: %s, want the base", got)
	}
}

func TestRetryDelay(t *testing.T) {
	cfg := BackoffConfig{Base: time.Second, Max: 60 * time.Second, Multiplier: 2, JitterPercent: NoJitter}
	p := &stepPolicy{strategy: template.BackoffExponential, base: 50 * time.Millisecond, max: 200 * time.Millisecond}
	now := time.Now()
	if d, kind := retryDelay(cfg, p, 2, nil, now, &fixedJitter{}); d != 100*time.Millisecond || kind != backoffTemplate {
		t.Errorf("template: %s (%s), want 100ms template", d, kind)
	}
	if d, kind := retryDelay(cfg, nil, 2, nil, now, &fixedJitter{}); d != 4*time.Second || kind != backoffExponential {
		t.Errorf("no policy: %s (%s), want the configured 4s", d, kind)
	}
	// The handler's retry_after (Retry-After header) wins over the template, capped by cfg.Max.
	if d, kind := retryDelay(cfg, p, 2, map[string]string{"Retry-After": "5"}, now, &fixedJitter{}); d != 5*time.Second || kind != backoffServerRequested {
		t.Errorf("retry-after: %s (%s), want 5s server_requested", d, kind)
	}
	if d, _ := retryDelay(cfg, p, 2, map[string]string{"Retry-After": "600"}, now, &fixedJitter{}); d != time.Minute {
		t.Errorf("retry-after capped: %s, want 1m", d)
	}
	cfg.JitterPercent = 0.15
	j := &fixedJitter{d: 1000}
	if d, _ := retryDelay(cfg, p, 2, nil, now, j); j.max != 15 || d != 115*time.Millisecond {
		t.Errorf("positive jitter: %s (range %d), want 115ms (range 15)", d, j.max)
	}
	if d, _ := retryDelay(cfg, p, 3, nil, now, &fixedJitter{d: 1000}); d != 200*time.Millisecond {
		t.Errorf("jitter above max: %s, want 200ms", d)
	}
	if d, _ := retryDelay(cfg, p, 2, nil, now, &fixedJitter{d: 7, neg: true}); d != 93*time.Millisecond {
		t.Errorf("negative jitter: %s, want 93ms", d)
	}
}

func TestStoredBackoff(t *testing.T) {
	cases := []struct {
		d       time.Duration
		secs    int
		earlier time.Duration
	}{
		{0, 0, 0},
		{50 * time.Millisecond, 1, 950 * time.Millisecond},
		{time.Second, 1, 0},
		{2500 * time.Millisecond, 3, 500 * time.Millisecond},
		{-time.Second, 0, 0},
	}
	for _, c := range cases {
		secs, earlier := storedBackoff(c.d)
		if secs != c.secs || earlier != c.earlier {
			t.Errorf("%s: (%d, %s), want (%d, %s)", c.d, secs, earlier, c.secs, c.earlier)
		}
		if got := time.Duration(secs)*time.Second - earlier; got != max(c.d, 0) {
			t.Errorf("%s: encodes %s", c.d, got)
		}
	}
}
