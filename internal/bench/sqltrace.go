package bench

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// sqlCounter is a pgx tracer counting what one pool sends: statements, round trips (a pipelined
// batch is one), transactions (explicit, or a multi-statement batch committed on its own), and with detail on, calls and client-side time per SQL text.
// Statements that pgx prepares for its statement cache cost one more round trip each; they are
// counted apart (prepares) and happen once per connection and SQL text.
type sqlCounter struct {
	statements atomic.Int64
	roundTrips atomic.Int64
	begins     atomic.Int64
	prepares   atomic.Int64
	detail     bool

	mu    sync.Mutex
	bySQL map[string]*sqlStat
}

// sqlStat is one SQL text's client-side figures.
type sqlStat struct {
	Calls int64
	Time  time.Duration // measured around the round trip; batch members have none of their own
}

type traceStartKey struct{}

func newSQLCounter(detail bool) *sqlCounter {
	return &sqlCounter{detail: detail, bySQL: map[string]*sqlStat{}}
}

// TraceQueryStart counts one statement sent on its own (one round trip).
func (c *sqlCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.statements.Add(1)
	c.roundTrips.Add(1)
	if isBegin(data.SQL) {
		c.begins.Add(1)
	}
	if !c.detail {
		return ctx
	}
	return context.WithValue(ctx, traceStartKey{}, traceStart{sql: data.SQL, at: time.Now()})
}

// TraceQueryEnd records the statement's client-side time in detail mode.
func (c *sqlCounter) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if !c.detail {
		return
	}
	if s, ok := ctx.Value(traceStartKey{}).(traceStart); ok {
		c.record(s.sql, 1, time.Since(s.at))
	}
}

// TraceBatchStart counts one round trip for the whole batch, and a transaction when the batch
// runs outside one (it then commits as a whole: an implicit transaction).
func (c *sqlCounter) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	if conn != nil && conn.PgConn().TxStatus() == 'I' && data.Batch != nil && data.Batch.Len() > 1 {
		c.begins.Add(1)
	}
	if !c.detail {
		return ctx
	}
	return context.WithValue(ctx, traceStartKey{}, traceStart{at: time.Now()})
}

// TraceBatchQuery counts one statement of a batch.
func (c *sqlCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	c.statements.Add(1)
	if c.detail {
		c.record(data.SQL, 1, 0)
	}
}

// TraceBatchEnd records the batch's time under a synthetic "(pipelined batch)" entry.
func (c *sqlCounter) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	if !c.detail {
		return
	}
	if s, ok := ctx.Value(traceStartKey{}).(traceStart); ok {
		c.record("(pipelined batch: one round trip)", 1, time.Since(s.at))
	}
}

// TracePrepareStart counts a statement-cache prepare (one extra round trip).
func (c *sqlCounter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.prepares.Add(1)
	return ctx
}

// TracePrepareEnd does nothing.
func (c *sqlCounter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

type traceStart struct {
	sql string
	at  time.Time
}

func (c *sqlCounter) record(sql string, calls int64, d time.Duration) {
	key := normalizeSQL(sql)
	c.mu.Lock()
	s := c.bySQL[key]
	if s == nil {
		s = &sqlStat{}
		c.bySQL[key] = s
	}
	s.Calls += calls
	s.Time += d
	c.mu.Unlock()
}

// sqlTotals is a point-in-time copy of a counter's totals.
type sqlTotals struct {
	Statements, RoundTrips, Begins, Prepares int64
}

func (c *sqlCounter) totals() sqlTotals {
	return sqlTotals{c.statements.Load(), c.roundTrips.Load(), c.begins.Load(), c.prepares.Load()}
}

func (t sqlTotals) sub(o sqlTotals) sqlTotals {
	return sqlTotals{t.Statements - o.Statements, t.RoundTrips - o.RoundTrips, t.Begins - o.Begins, t.Prepares - o.Prepares}
}

// snapshot copies the per-SQL figures.
func (c *sqlCounter) snapshot() map[string]sqlStat {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]sqlStat, len(c.bySQL))
	for k, v := range c.bySQL {
		out[k] = *v
	}
	return out
}

// ClientStatement is one SQL text as a pool sent it during a phase.
type ClientStatement struct {
	SQL          string  `json:"sql"`
	Calls        int64   `json:"calls"`
	CallsPerStep float64 `json:"calls_per_step"`
	ClientMs     float64 `json:"client_ms"`
	MsPerStep    float64 `json:"client_ms_per_step"`
}

// diffStatements returns after-before per SQL text, sorted by calls then time, with per-step
// figures.
func diffStatements(before, after map[string]sqlStat, steps int64) []ClientStatement {
	var out []ClientStatement
	for k, a := range after {
		b := before[k]
		calls := a.Calls - b.Calls
		if calls <= 0 {
			continue
		}
		ms := float64(a.Time-b.Time) / 1e6
		out = append(out, ClientStatement{SQL: k, Calls: calls, ClientMs: ms,
			CallsPerStep: float64(calls) / float64(max(steps, 1)), MsPerStep: ms / float64(max(steps, 1))})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Calls != out[j].Calls {
			return out[i].Calls > out[j].Calls
		}
		return out[i].ClientMs > out[j].ClientMs
	})
	return out
}

func isBegin(sql string) bool {
	s := strings.TrimSpace(sql)
	return len(s) >= 5 && strings.EqualFold(s[:5], "begin")
}

// normalizeSQL collapses whitespace so one statement written on several lines has one key.
func normalizeSQL(sql string) string {
	return strings.Join(strings.Fields(sql), " ")
}
