package web

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/queue"
)

// Check statuses, as tasker-core reports them.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"
)

// ErrDegraded marks a check error that degrades the service without making it unready.
var ErrDegraded = errors.New("degraded")

// Check is one named readiness check. Run returns a detail message and nil when healthy, an
// error wrapping ErrDegraded when degraded (the service stays ready), and any other error when
// unhealthy (the service is not ready).
type Check struct {
	Name string
	Run  func(ctx context.Context) (detail string, err error)
}

// CheckResult is a check's outcome in tasker-core's shape.
type CheckResult struct {
	Status      string    `json:"status"`
	Message     *string   `json:"message"`
	DurationMS  int64     `json:"duration_ms"`
	LastChecked time.Time `json:"last_checked"`
}

// Pinger tells whether the database answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// PingerFunc adapts a function to Pinger.
type PingerFunc func(ctx context.Context) error

// Ping calls f.
func (f PingerFunc) Ping(ctx context.Context) error { return f(ctx) }

// QueryRower runs a single-row query: *pgxpool.Pool, *pgx.Conn or pgx.Tx.
type QueryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SelectOne is a Pinger that runs SELECT 1 on db, as tasker-core's readiness check does.
func SelectOne(db QueryRower) Pinger {
	return PingerFunc(func(ctx context.Context) error {
		var one int
		if err := db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			return err
		}
		if one != 1 {
			return fmt.Errorf("SELECT 1 returned %d", one)
		}
		return nil
	})
}

// QueueMetricsSource reports the metrics of every PGMQ queue; *queue.Client satisfies it.
type QueueMetricsSource interface {
	MetricsAll(ctx context.Context) ([]queue.Metrics, error)
}

// InFlightSource reports how many handlers are busy; *worker.Metrics satisfies it.
type InFlightSource interface {
	InFlight() int64
}

// DatabaseCheck is the "database" check: the database answers p.
func DatabaseCheck(p Pinger) Check {
	return Check{Name: "database", Run: func(ctx context.Context) (string, error) {
		if err := p.Ping(ctx); err != nil {
			return "", fmt.Errorf("database unreachable: %w", err)
		}
		return "database answers", nil
	}}
}

// QueueBacklogDegraded is the summed depth of the checked queues from which QueuesCheck reports
// degraded (tasker-core's healthy threshold). A backlog never makes a worker unready: it is the
// reason to have workers.
const QueueBacklogDegraded = 10000

// QueuesCheck is the "queues" check: every queue in names exists.
func QueuesCheck(src QueueMetricsSource, names []string) Check {
	names = slices.Clone(names)
	return Check{Name: "queues", Run: func(ctx context.Context) (string, error) {
		ms, err := src.MetricsAll(ctx)
		if err != nil {
			return "", fmt.Errorf("queue metrics unavailable: %w", err)
		}
		var missing []string
		var depth int64
		for _, n := range names {
			i := slices.IndexFunc(ms, func(m queue.Metrics) bool { return m.Queue == n })
			if i < 0 {
				missing = append(missing, n)
				continue
			}
			depth += ms[i].Length
		}
		if len(missing) > 0 {
			return "", fmt.Errorf("missing queues: %s", strings.Join(missing, ", "))
		}
		detail := fmt.Sprintf("%d queues, %d messages", len(names), depth)
		if depth >= QueueBacklogDegraded {
			return "", fmt.Errorf("%w: backlog of %d messages", ErrDegraded, depth)
		}
		return detail, nil
	}}
}

// PoolCheck is the "pool" check: fewer than capacity handlers are busy.
func PoolCheck(src InFlightSource, capacity int) Check {
	return Check{Name: "pool", Run: func(context.Context) (string, error) {
		n := src.InFlight()
		if n >= int64(capacity) {
			return "", fmt.Errorf("handler pool saturated: %d of %d in use", n, capacity)
		}
		return fmt.Sprintf("%d of %d in use", n, capacity), nil
	}}
}

// ReadAgeSource says how long ago each consumed queue was last read successfully;
// *worker.Metrics satisfies it.
type ReadAgeSource interface {
	ReadAges(now time.Time) []queue.ReadAge
}

// ReadsCheck is the "reads" check: every consumed queue was read successfully within staleAfter.
// busy, when given, reports that the consumer has no reason to read (its handler slots are all
// busy), which excuses an old read.
func ReadsCheck(src ReadAgeSource, staleAfter time.Duration, busy func() bool) Check {
	return Check{Name: "reads", Run: func(context.Context) (string, error) {
		var stale []string
		var oldest time.Duration
		for _, a := range src.ReadAges(time.Now()) {
			oldest = max(oldest, a.Age)
			if a.Age > staleAfter {
				stale = append(stale, fmt.Sprintf("%s %ds ago", a.Queue, int64(a.Age.Seconds())))
			}
		}
		if len(stale) > 0 && (busy == nil || !busy()) {
			return "", fmt.Errorf("no successful read within %s: %s", staleAfter, strings.Join(stale, ", "))
		}
		return fmt.Sprintf("oldest last read %.1fs ago", oldest.Seconds()), nil
	}}
}

// runChecks runs checks concurrently, each bounded by timeout, and reports whether all of them
// left the service ready.
func runChecks(ctx context.Context, checks []Check, timeout time.Duration) (map[string]CheckResult, bool) {
	results := make([]CheckResult, len(checks))
	done := make(chan int, len(checks))
	for i, c := range checks {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			detail, err := safeRun(cctx, c)
			r := CheckResult{Status: StatusHealthy, DurationMS: time.Since(start).Milliseconds(), LastChecked: time.Now().UTC()}
			switch {
			case err == nil:
				if detail != "" {
					r.Message = &detail
				}
			case errors.Is(err, ErrDegraded):
				r.Status = StatusDegraded
				msg := err.Error()
				r.Message = &msg
			default:
				r.Status = StatusUnhealthy
				msg := err.Error()
				r.Message = &msg
			}
			results[i] = r
			done <- i
		}()
	}
	for range checks {
		<-done
	}
	out := make(map[string]CheckResult, len(checks))
	ready := true
	for i, c := range checks {
		out[c.Name] = results[i]
		if results[i].Status == StatusUnhealthy {
			ready = false
		}
	}
	return out, ready
}

func safeRun(ctx context.Context, c Check) (detail string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check %s panicked: %v", c.Name, p)
		}
	}()
	return c.Run(ctx)
}
