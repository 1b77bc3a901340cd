package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/internal/pgcontainer"
	"github.com/tasker-go/tasker/migrations"
)

// server is the PostgreSQL server the measurements create their databases on.
type server struct {
	adminURL  string
	source    string // "DATABASE_URL" or "docker <image>"
	container *pgcontainer.Server
	keep      bool // keep databases after each measurement
}

// openServer uses url when given, else starts the image of pgcontainer.Image() in Docker.
func openServer(ctx context.Context, dbURL string, out io.Writer) (*server, error) {
	if dbURL != "" {
		return &server{adminURL: dbURL, source: "DATABASE_URL"}, nil
	}
	image := pgcontainer.Image()
	fmt.Fprintf(out, "starting PostgreSQL in Docker (%s)\n", image)
	srv, err := pgcontainer.Start(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("bench: %w (or set DATABASE_URL to use an existing server)", err)
	}
	return &server{adminURL: srv.URL, source: "docker " + image, container: srv}, nil
}

func (s *server) close() { s.container.Stop() }

// database is a fresh, migrated database created for one measurement.
type database struct {
	name    string
	url     string
	migrate time.Duration
	srv     *server
}

// freshDatabase creates a new database on the server and migrates it (tasker schema + PGMQ).
func (s *server) freshDatabase(ctx context.Context, label string) (*database, error) {
	name := "tasker_bench_" + label + "_" + randHex(4)
	conn, err := db.ConnectOne(ctx, s.adminURL)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to server: %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0")
	_ = conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: create database %s: %w", name, err)
	}
	d := &database{name: name, url: db.WithDatabase(s.adminURL, name), srv: s}
	start := time.Now()
	pool, err := db.Connect(ctx, d.url)
	if err != nil {
		d.drop()
		return nil, err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		d.drop()
		return nil, fmt.Errorf("bench: migrate %s: %w", name, err)
	}
	d.migrate = time.Since(start)
	return d, nil
}

// drop removes the database (unless the server keeps them), disconnecting whoever is left.
func (d *database) drop() {
	if d == nil || d.srv.keep {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.ConnectOne(ctx, d.srv.adminURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
}

// pool opens a pool on the database with maxConns connections and, when c is not nil, c as its
// tracer.
func (d *database) pool(ctx context.Context, maxConns int, c *sqlCounter) (*pgxpool.Pool, error) {
	cfg, err := db.Config(d.url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(maxConns)
	if c != nil {
		cfg.ConnConfig.Tracer = c
	}
	return db.ConnectConfig(ctx, cfg)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// serverInfo describes the server the figures were measured on.
type serverInfo struct {
	Source   string            `json:"source"`
	Version  string            `json:"version"`
	Settings map[string]string `json:"settings"`
}

func (s *server) info(ctx context.Context) serverInfo {
	si := serverInfo{Source: s.source, Settings: map[string]string{}}
	conn, err := db.ConnectOne(ctx, s.adminURL)
	if err != nil {
		return si
	}
	defer conn.Close(ctx)
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&si.Version)
	rows, err := conn.Query(ctx, `SELECT name, setting || COALESCE(unit, '') FROM pg_settings
		WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'work_mem',
		               'shared_preload_libraries', 'wal_level', 'full_page_writes')`)
	if err != nil {
		return si
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if rows.Scan(&k, &v) == nil {
			si.Settings[k] = v
		}
	}
	return si
}
