// Package db opens PostgreSQL pools configured the way tasker-core's SQL expects.
package db

import (
	"context"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RuntimeParams are set on every connection: tasker-core's SQL functions call each other
// unqualified (search_path must include tasker) and its timestamps are naive UTC. A session
// idle inside a transaction for a minute (a process frozen or cut off mid-transaction) is ended
// by the server, so its row locks do not block claims and recovery until TCP keepalive gives up;
// every tasker-go transaction is short.
var RuntimeParams = map[string]string{
	"search_path":                         "tasker,public",
	"TimeZone":                            "UTC",
	"idle_in_transaction_session_timeout": "60000",
}

// Config parses url into a pool config with RuntimeParams applied.
func Config(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("db: parse database url: %w", err)
	}
	for k, v := range RuntimeParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerUUID(conn.TypeMap())
		return nil
	}
	return cfg, nil
}

// Connect opens a pool to url and checks that the server answers.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := Config(url)
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

// ConnectOne opens a single connection (for LISTEN) with RuntimeParams applied.
func ConnectOne(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("db: parse database url: %w", err)
	}
	for k, v := range RuntimeParams {
		cfg.RuntimeParams[k] = v
	}
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
