package bench

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ServerStatement is one pg_stat_statements entry's change during a phase, in the phase's
// database: calls and server execution time, in total and per step.
type ServerStatement struct {
	Query        string  `json:"query"`
	Calls        int64   `json:"calls"`
	CallsPerStep float64 `json:"calls_per_step"`
	TotalMs      float64 `json:"total_exec_ms"`
	MsPerStep    float64 `json:"exec_ms_per_step"`
	MeanMs       float64 `json:"mean_exec_ms"`
	Rows         int64   `json:"rows"`
}

type pgStatEntry struct {
	query   string
	calls   int64
	totalMs float64
	rows    int64
}

// pgStat reads pg_stat_statements when the server has it loaded: it creates the extension in
// the database (the view is per server; the rows are filtered to this database).
type pgStat struct {
	pool *pgxpool.Pool
	ok   bool
	err  error
}

func newPGStat(ctx context.Context, pool *pgxpool.Pool) *pgStat {
	p := &pgStat{pool: pool}
	if _, err := pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		p.err = err
		return p
	}
	if _, err := p.snapshot(ctx); err != nil {
		p.err = err
		return p
	}
	p.ok = true
	return p
}

func (p *pgStat) snapshot(ctx context.Context) (map[int64]pgStatEntry, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT queryid, query, calls, total_exec_time, rows
		  FROM pg_stat_statements
		 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel`)
	if err != nil {
		return nil, fmt.Errorf("bench: pg_stat_statements: %w", err)
	}
	defer rows.Close()
	out := map[int64]pgStatEntry{}
	for rows.Next() {
		var id int64
		var e pgStatEntry
		if err := rows.Scan(&id, &e.query, &e.calls, &e.totalMs, &e.rows); err != nil {
			return nil, err
		}
		out[id] = e
	}
	return out, rows.Err()
}

// diffServer returns after-before per statement, by total time, with per-step figures.
func diffServer(before, after map[int64]pgStatEntry, steps int64) []ServerStatement {
	var out []ServerStatement
	for id, a := range after {
		b := before[id]
		calls := a.calls - b.calls
		if calls <= 0 {
			continue
		}
		ms := a.totalMs - b.totalMs
		s := float64(max(steps, 1))
		out = append(out, ServerStatement{Query: normalizeSQL(a.query), Calls: calls, CallsPerStep: float64(calls) / s,
			TotalMs: ms, MsPerStep: ms / s, MeanMs: ms / float64(calls), Rows: a.rows - b.rows})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TotalMs > out[j].TotalMs })
	return out
}

// SQLProfile is the statement profile of one phase: client-side counts per pool (component) and,
// when pg_stat_statements is available, the server-side figures of the phase's database.
type SQLProfile struct {
	Phase      string                       `json:"phase"`
	Steps      int64                        `json:"steps"`
	Tasks      int64                        `json:"tasks"`
	Components map[string]ComponentSQL      `json:"components"`
	Server     []ServerStatement            `json:"server_statements,omitempty"`
	ServerNote string                       `json:"server_note,omitempty"`
	Extra      map[string]float64           `json:"extra,omitempty"`
	ByPool     map[string][]ClientStatement `json:"client_statements,omitempty"`
}

// ComponentSQL is what one pool sent during a phase, in total and per step.
type ComponentSQL struct {
	Statements        int64   `json:"statements"`
	RoundTrips        int64   `json:"round_trips"`
	Transactions      int64   `json:"transactions"`
	Prepares          int64   `json:"prepares"`
	StatementsPerStep float64 `json:"statements_per_step"`
	RoundTripsPerStep float64 `json:"round_trips_per_step"`
	TxPerStep         float64 `json:"transactions_per_step"`
}

func componentSQL(t sqlTotals, steps int64) ComponentSQL {
	s := float64(max(steps, 1))
	return ComponentSQL{Statements: t.Statements, RoundTrips: t.RoundTrips, Transactions: t.Begins, Prepares: t.Prepares,
		StatementsPerStep: float64(t.Statements) / s, RoundTripsPerStep: float64(t.RoundTrips) / s, TxPerStep: float64(t.Begins) / s}
}
