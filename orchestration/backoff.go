package orchestration

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker/protocol"
	"github.com/tasker-go/tasker/template"
)

// Backoff kinds recorded in logs.
const (
	backoffServerRequested = "server_requested"
	backoffExponential     = "exponential"
	backoffTemplate        = "template"
)

// jitterSource draws the jitter: a whole number in [0, n] and a sign.
type jitterSource interface {
	upTo(n int64) int64
	negative() bool
}

type randJitter struct{}

func (randJitter) upTo(n int64) int64 { return rand.Int64N(n + 1) }
func (randJitter) negative() bool     { return rand.IntN(2) == 0 }

// computeBackoff returns the retry delay in whole seconds for a retryable failure after
// attempts executions, as tasker-core's BackoffCalculator computes it:
//   - a Retry-After header (key matched case-insensitively; integer seconds, or an RFC 2822 date
//     in the future) gives min(value, Max), without jitter;
//   - otherwise floor(min(Base × Multiplier^attempts, Max)), then ± a uniform whole number of
//     seconds in [0, floor(delay × JitterPercent)], never below 0 nor above Max.
func computeBackoff(cfg BackoffConfig, attempts int, headers map[string]string, now time.Time, j jitterSource) (int, string) {
	maxSec := int64(cfg.Max / time.Second)
	if ra, ok := retryAfter(headers, now); ok {
		return int(min(ra, maxSec)), backoffServerRequested
	}
	exp := cfg.Base.Seconds() * math.Pow(cfg.Multiplier, float64(max(attempts, 0)))
	delay := int64(math.Floor(min(exp, float64(maxSec))))
	if pct := cfg.JitterPercent; pct > 0 {
		if r := int64(float64(delay) * pct); r > 0 {
			d := j.upTo(r)
			if j.negative() {
				delay = max(delay-d, 0)
			} else {
				delay = min(delay+d, maxSec)
			}
		}
	}
	return int(delay), backoffExponential
}

// retryAfter reads the Retry-After header from orchestration_metadata.headers.
func retryAfter(headers map[string]string, now time.Time) (int64, bool) {
	for k, v := range headers {
		if !strings.EqualFold(k, protocol.RetryAfterHeader) {
			continue
		}
		v = strings.TrimSpace(v)
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			return int64(n), true
		}
		if t, err := mail.ParseDate(v); err == nil {
			if secs := int64(t.Sub(now) / time.Second); secs > 0 {
				return secs, true
			}
		}
		return 0, false
	}
	return 0, false
}

// stepPolicy is the retry backoff a template step sets for itself (retry.backoff,
// retry.backoff_base_ms, retry.max_backoff_ms). tasker-core ignores these settings; tasker-go
// honours them.
type stepPolicy struct {
	strategy template.BackoffStrategy
	base     time.Duration
	max      time.Duration
}

// templatePolicy returns the backoff policy of a step's retry block, or false when the block sets
// none and the configured backoff applies. A block sets none when its strategy is exponential and
// it gives neither backoff_base_ms nor max_backoff_ms, or exactly tasker-core's defaults
// (1000 / 30000): those are what a step without a retry block carries, so they cannot be told
// apart from "not set". A field the block omits takes the configured Base or Max.
func templatePolicy(r template.RetryConfiguration, cfg BackoffConfig) (stepPolicy, bool) {
	strategy := r.Backoff
	if strategy == "" {
		strategy = template.BackoffExponential
	}
	def := template.DefaultRetry()
	equal := func(v, d *uint64) bool { return v != nil && *v == *d }
	unset := (r.BackoffBaseMs == nil && r.MaxBackoffMs == nil) ||
		(equal(r.BackoffBaseMs, def.BackoffBaseMs) && equal(r.MaxBackoffMs, def.MaxBackoffMs))
	if strategy == template.BackoffExponential && unset {
		return stepPolicy{}, false
	}
	p := stepPolicy{strategy: strategy, base: cfg.Base, max: cfg.Max}
	if r.BackoffBaseMs != nil {
		p.base = time.Duration(min(*r.BackoffBaseMs, math.MaxInt64/uint64(time.Millisecond))) * time.Millisecond
	}
	if r.MaxBackoffMs != nil {
		p.max = time.Duration(min(*r.MaxBackoffMs, math.MaxInt64/uint64(time.Millisecond))) * time.Millisecond
	}
	return p, true
}

// delay is the policy's delay after attempts executions (at least 1), before jitter: the first
// retry waits base, later ones grow by the strategy (none: constant; linear: base × attempts;
// exponential: base × multiplier^(attempts−1); fibonacci: base × 1, 1, 2, 3, 5, …), capped at max.
func (p stepPolicy) delay(attempts int, multiplier float64) time.Duration {
	n := max(attempts, 1)
	var factor float64
	switch p.strategy {
	case template.BackoffNone:
		factor = 1
	case template.BackoffLinear:
		factor = float64(n)
	case template.BackoffFibonacci:
		a, b := 1.0, 1.0
		for i := 2; i < n && b < math.MaxInt64; i++ {
			a, b = b, a+b
		}
		factor = b
	default:
		factor = math.Pow(multiplier, float64(n-1))
	}
	d := float64(p.base) * factor
	if d >= float64(p.max) {
		return p.max
	}
	return time.Duration(d)
}

// retryDelay is the delay before a retryable failure after attempts executions may run again:
// a Retry-After header (the handler's retry_after) wins, capped at cfg.Max; otherwise the step's
// template policy when it has one, with cfg.JitterPercent of jitter in whole milliseconds, never
// above the policy's max; otherwise the configured backoff (computeBackoff).
func retryDelay(cfg BackoffConfig, policy *stepPolicy, attempts int, headers map[string]string, now time.Time, j jitterSource) (time.Duration, string) {
	if policy == nil {
		secs, kind := computeBackoff(cfg, attempts, headers, now, j)
		return time.Duration(secs) * time.Second, kind
	}
	if ra, ok := retryAfter(headers, now); ok {
		return time.Duration(min(ra, int64(cfg.Max/time.Second))) * time.Second, backoffServerRequested
	}
	d := policy.delay(attempts, cfg.Multiplier)
	if pct := cfg.JitterPercent; pct > 0 {
		if r := int64(float64(d.Milliseconds()) * pct); r > 0 {
			dj := time.Duration(j.upTo(r)) * time.Millisecond
			if j.negative() {
				d = max(d-dj, 0)
			} else {
				d = min(d+dj, policy.max)
			}
		}
	}
	return d, backoffTemplate
}

// storedBackoff encodes a delay in the columns tasker's readiness functions read, which retry a
// step at last_attempted_at + backoff_request_seconds (whole seconds): the delay rounded up to
// whole seconds, and how far before now last_attempted_at must be set so that the sum is
// exactly now + d.
func storedBackoff(d time.Duration) (secs int, earlier time.Duration) {
	d = max(d, 0)
	secs = int((d + time.Second - 1) / time.Second)
	return secs, time.Duration(secs)*time.Second - d
}

// stepBackoffPolicy looks up the template policy of a step (nil: the configured backoff applies,
// also when the template cannot be read).
func (o *Orchestrator) stepBackoffPolicy(ctx context.Context, q template.Querier, task *taskRow, step *stepRow, log *slog.Logger) *stepPolicy {
	tmpl := o.templates.Cached(task.NamedTaskUUID, task.TemplateAt)
	if tmpl == nil {
		var err error
		if tmpl, err = o.templates.Get(ctx, q, task.NamedTaskUUID); err != nil {
			log.Warn("no template for the step's retry policy; using the configured backoff", "error", err)
			return nil
		}
	}
	def := tmpl.Step(step.Name)
	if def == nil {
		def = tmpl.Step(step.TemplateStepName)
	}
	if def == nil {
		return nil
	}
	p, ok := templatePolicy(def.Retry, o.cfg.Backoff)
	if !ok {
		return nil
	}
	return &p
}
