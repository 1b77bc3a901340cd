package orchestration

import (
	"math"
	"math/rand/v2"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker/protocol"
)

// Backoff kinds recorded in logs.
const (
	backoffServerRequested = "server_requested"
	backoffExponential     = "exponential"
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
