package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
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
	keep      bool        // keep databases after each measurement
	cpu       *dbCPUMeter // the server processes' CPU time
}

// openServer uses url when given, else starts the image of pgcontainer.Image() in Docker with
// pg_stat_statements preloaded and durability DurabilityOn or DurabilityOff.
func openServer(ctx context.Context, dbURL, durability string, out io.Writer) (*server, error) {
	if dbURL != "" {
		s := &server{adminURL: dbURL, source: "DATABASE_URL"}
		s.cpu = serverCPUMeter(ctx, s)
		return s, nil
	}
	image := pgcontainer.Image()
	fmt.Fprintf(out, "starting PostgreSQL in Docker (%s, durability %s)\n", image, durability)
	srv, err := pgcontainer.StartWith(ctx, image, pgcontainer.Options{Durable: durability != DurabilityOff, StatStatements: true})
	if err != nil {
		return nil, fmt.Errorf("bench: %w (or set DATABASE_URL to use an existing server)", err)
	}
	source := "docker " + image
	if srv.DirectURL != srv.URL {
		source += " on its bridge address (no docker-proxy)"
	}
	s := &server{adminURL: srv.DirectURL, source: source, container: srv}
	s.cpu = serverCPUMeter(ctx, s)
	return s, nil
}

func (s *server) close() { s.container.Stop() }

// database is a fresh, migrated database created for one measurement.
type database struct {
	name    string
	url     string
	migrate time.Duration
	srv     *server
}

// emptyDatabase creates a new, empty database on the server.
func (s *server) emptyDatabase(ctx context.Context, label string) (*database, error) {
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
	return &database{name: name, url: db.WithDatabase(s.adminURL, name), srv: s}, nil
}

// freshDatabase creates a new database on the server and migrates it (tasker schema + PGMQ).
func (s *server) freshDatabase(ctx context.Context, label string) (*database, error) {
	d, err := s.emptyDatabase(ctx, label)
	if err != nil {
		return nil, err
	}
	name := d.name
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
	// Durable: fsync, synchronous_commit and full_page_writes all on.
	Durable bool `json:"durable"`
	// DBCPU is how the server processes' CPU time is read, or why it cannot be.
	DBCPU string `json:"db_cpu_method"`
}

// durable reports whether settings are crash-safe: fsync, synchronous_commit, full_page_writes on.
func durable(settings map[string]string) bool {
	return settings["fsync"] == "on" && settings["synchronous_commit"] != "off" && settings["synchronous_commit"] != "" &&
		settings["full_page_writes"] == "on"
}

// summary is the one-line description of the server's settings the report header prints.
func (si serverInfo) summary() string {
	var b strings.Builder
	for i, k := range headerSettings {
		if i > 0 {
			b.WriteString(" ")
		}
		v := si.Settings[k]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "%s=%s", k, v)
	}
	return b.String()
}

// headerSettings are the settings the report header prints, in order.
var headerSettings = []string{"fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "shared_buffers",
	"max_wal_size", "checkpoint_timeout", "max_connections", "work_mem", "shared_preload_libraries"}

func (s *server) info(ctx context.Context) (si serverInfo) {
	si = serverInfo{Source: s.source, Settings: map[string]string{}, DBCPU: s.cpu.method}
	if !s.cpu.ok() {
		si.DBCPU = s.cpu.note
	}
	defer func() { si.Durable = durable(si.Settings) }()
	conn, err := db.ConnectOne(ctx, s.adminURL)
	if err != nil {
		return si
	}
	defer conn.Close(ctx)
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&si.Version)
	rows, err := conn.Query(ctx, `SELECT name, current_setting(name) FROM pg_settings
		WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'work_mem',
		               'shared_preload_libraries', 'wal_level', 'full_page_writes', 'wal_sync_method',
		               'max_wal_size', 'checkpoint_timeout', 'effective_cache_size', 'commit_delay',
		               'pg_stat_statements.track', 'pg_stat_statements.track_planning')`)
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
