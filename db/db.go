// Package db opens PostgreSQL pools configured the way tasker-core's SQL expects, on connections
// that notice a dead network within seconds.
package db

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RuntimeParams are set on every connection: tasker-core's SQL functions call each other
// unqualified (search_path must include tasker) and its timestamps are naive UTC. A session
// idle inside a transaction for a minute (a process frozen or cut off mid-transaction) is ended
// by the server, so its row locks do not block claims and recovery; every tasker-go
// transaction is short.
//
// Every statement runs on its generic plan (plan_cache_mode=force_generic_plan): tasker-go's
// statements look rows up by key, so the generic plan is the custom one, and PostgreSQL would
// otherwise keep re-planning the large ones (the claim, the readiness read with its inlined
// SQL functions) at every call: measured on a linear burst, planning took 12 ms per claim and
// 3.4 ms per readiness read, a third of the server's time per step.
var RuntimeParams = map[string]string{
	"search_path":                         "tasker,public",
	"TimeZone":                            "UTC",
	"idle_in_transaction_session_timeout": "60000",
	"plan_cache_mode":                     "force_generic_plan",
}

// Session says how a process's connections are dialled and what the server bounds for them.
// A setting the database URL already makes (application_name, statement_timeout, lock_timeout,
// connect_timeout) wins over the one here.
type Session struct {
	// AppName is the connection's application_name (tasker-worker, tasker-orchestrator,
	// tasker-cli), as pg_stat_activity shows it.
	AppName string
	// StatementTimeout is the server's statement_timeout for every statement; a negative
	// value leaves the server's setting.
	StatementTimeout time.Duration
	// LockTimeout is the server's lock_timeout; a negative value leaves the server's setting.
	LockTimeout time.Duration
	// ConnectTimeout bounds dialling plus the startup exchange of one connection.
	ConnectTimeout time.Duration
	// Keepalive is the TCP keepalive idle time and probe interval (three probes): an idle
	// pooled connection whose peer vanished is closed by the kernel instead of failing the
	// next call after minutes.
	Keepalive time.Duration
	// UserTimeout is TCP_USER_TIMEOUT (Linux; ignored elsewhere): a connection whose sent
	// data stays unacknowledged this long is closed, so a query sent into a silently dropping
	// network fails instead of waiting for the kernel's retransmission limit (~15 minutes).
	UserTimeout time.Duration
}

// DefaultSession is the tuning a Session's zero fields take: statements bounded at 60 s and lock
// waits at 15 s (no tasker-go statement needs longer; migrations lift both), a dead peer noticed
// within about 15 s.
func DefaultSession() Session {
	return Session{
		AppName:          "tasker-go",
		StatementTimeout: 60 * time.Second,
		LockTimeout:      15 * time.Second,
		ConnectTimeout:   10 * time.Second,
		Keepalive:        5 * time.Second,
		UserTimeout:      15 * time.Second,
	}
}

// withDefaults fills s's zero fields from DefaultSession.
func (s Session) withDefaults() Session {
	d := DefaultSession()
	if s.AppName == "" {
		s.AppName = d.AppName
	}
	if s.StatementTimeout == 0 {
		s.StatementTimeout = d.StatementTimeout
	}
	if s.LockTimeout == 0 {
		s.LockTimeout = d.LockTimeout
	}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = d.ConnectTimeout
	}
	if s.Keepalive == 0 {
		s.Keepalive = d.Keepalive
	}
	if s.UserTimeout == 0 {
		s.UserTimeout = d.UserTimeout
	}
	return s
}

// Option adjusts the Session of a connection or pool.
type Option func(*Session)

// WithAppName sets the connections' application_name.
func WithAppName(name string) Option { return func(s *Session) { s.AppName = name } }

// WithSession replaces the whole tuning (zero fields take DefaultSession's values).
func WithSession(t Session) Option { return func(s *Session) { *s = t } }

func session(opts []Option) Session {
	var s Session
	for _, o := range opts {
		o(&s)
	}
	return s.withDefaults()
}

// apply sets the runtime parameters, the dialer and the connect timeout of cc.
func (s Session) apply(cc *pgconn.Config) {
	for k, v := range RuntimeParams {
		cc.RuntimeParams[k] = v
	}
	setDefault := func(k, v string) {
		if _, ok := cc.RuntimeParams[k]; !ok {
			cc.RuntimeParams[k] = v
		}
	}
	setDefault("application_name", s.AppName)
	if s.StatementTimeout > 0 {
		setDefault("statement_timeout", strconv.FormatInt(s.StatementTimeout.Milliseconds(), 10))
	}
	if s.LockTimeout > 0 {
		setDefault("lock_timeout", strconv.FormatInt(s.LockTimeout.Milliseconds(), 10))
	}
	// The server's side of the same connection: a backend whose client vanished behind a
	// silent drop is ended within about UserTimeout, releasing its row locks, instead of
	// holding them until idle_in_transaction_session_timeout.
	if s.Keepalive > 0 {
		secs := strconv.Itoa(max(1, int(s.Keepalive/time.Second)))
		setDefault("tcp_keepalives_idle", secs)
		setDefault("tcp_keepalives_interval", secs)
		setDefault("tcp_keepalives_count", "3")
	}
	if s.UserTimeout > 0 {
		setDefault("tcp_user_timeout", strconv.FormatInt(s.UserTimeout.Milliseconds(), 10))
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = s.ConnectTimeout
	}
	d := &net.Dialer{
		Timeout: cc.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: s.Keepalive, Interval: s.Keepalive, Count: 3,
		},
		Control: userTimeoutControl(s.UserTimeout),
	}
	cc.DialFunc = d.DialContext
}

// Config parses url into a pool config with RuntimeParams and the Session applied.
func Config(url string, opts ...Option) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("db: parse database url: %w", err)
	}
	session(opts).apply(&cfg.ConnConfig.Config)
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerUUID(conn.TypeMap())
		return nil
	}
	return cfg, nil
}

// Connect opens a pool to url and checks that the server answers.
func Connect(ctx context.Context, url string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := Config(url, opts...)
	if err != nil {
		return nil, err
	}
	return ConnectConfig(ctx, cfg)
}

// ConnectConfig opens a pool from cfg and pings it.
func ConnectConfig(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("db: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("db: ping %s: %w", cfg.ConnConfig.Host, err)
	}
	return pool, nil
}

// ConnectOne opens a single connection (for LISTEN) with RuntimeParams and the Session applied.
func ConnectOne(ctx context.Context, url string, opts ...Option) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("db: parse database url: %w", err)
	}
	session(opts).apply(&cfg.Config)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("db: connect: %w", err)
	}
	registerUUID(conn.TypeMap())
	return conn, nil
}

// WithDatabase is url with its database name replaced by name (url unchanged if unparsable):
// another database on the same server, as tests and benchmarks create them.
func WithDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.Path = "/" + name
	return u.String()
}
