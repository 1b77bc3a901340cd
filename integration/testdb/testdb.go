// Package testdb gives integration tests a migrated PostgreSQL database.
//
// Where the server comes from:
//   - TASKER_TEST_DATABASE_URL set: that server; each test gets a fresh database on it.
//   - otherwise testcontainers-go starts TASKER_TEST_PG_IMAGE (see internal/pgcontainer; the
//     default is a public PostgreSQL image with PGMQ, for users with internet).
//   - neither Docker nor a URL: tests are skipped with a message saying so.
//
// A template database is migrated once per test binary; New clones it per test.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/internal/pgcontainer"
	"github.com/tasker-go/tasker/migrations"
)

var (
	once      sync.Once
	setupErr  error
	skipMsg   string
	serverURL string // admin URL of the server (database "postgres")
	template  string // name of the migrated template database
	server    *pgcontainer.Server
)

// Main runs the package's tests and tears the server down afterwards. Call it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if template != "" && serverURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if conn, err := db.ConnectOne(ctx, serverURL); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{template}.Sanitize()+" WITH (FORCE)")
			_ = conn.Close(ctx)
		}
		cancel()
	}
	server.Stop()
	return code
}

// ServerURL returns the admin URL of the test server, starting it if needed.
func ServerURL(t testing.TB) string {
	t.Helper()
	setup(t)
	return serverURL
}

// New returns a URL and a pool for a fresh, migrated database dropped when the test ends.
func New(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	u := NewURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := db.Connect(ctx, u)
	if err != nil {
		t.Fatalf("testdb: connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return u, pool
}

// NewURL creates a fresh migrated database and returns its URL.
func NewURL(t testing.TB) string {
	t.Helper()
	setup(t)
	name := "tasker_test_" + randHex(6)
	if err := createDatabase(serverURL, name, template); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() { dropDatabase(serverURL, name) })
	return db.WithDatabase(serverURL, name)
}

// NewEmptyURL creates a fresh database with nothing installed (for migration tests).
func NewEmptyURL(t testing.TB) string {
	t.Helper()
	setup(t)
	name := "tasker_empty_" + randHex(6)
	if err := createDatabase(serverURL, name, "template0"); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() { dropDatabase(serverURL, name) })
	return db.WithDatabase(serverURL, name)
}

func setup(t testing.TB) {
	t.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		setupErr = start(ctx)
	})
	if skipMsg != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(skipMsg + " (CI=true: a database is required)")
		}
		t.Skip(skipMsg)
	}
	if setupErr != nil {
		t.Fatalf("testdb: %v", setupErr)
	}
}

func start(ctx context.Context) error {
	if u := os.Getenv("TASKER_TEST_DATABASE_URL"); u != "" {
		serverURL = u
	} else {
		if err := startContainer(ctx); err != nil {
			return err
		}
		if skipMsg != "" {
			return nil
		}
	}
	template = "tasker_tpl_" + randHex(6)
	if err := createDatabase(serverURL, template, "template0"); err != nil {
		return err
	}
	pool, err := db.Connect(ctx, db.WithDatabase(serverURL, template))
	if err != nil {
		return err
	}
	defer pool.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := migrations.Up(ctx, pool, log); err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	return nil
}

func startContainer(ctx context.Context) error {
	srv, err := pgcontainer.Start(ctx, pgcontainer.Image())
	if errors.Is(err, pgcontainer.ErrNoDocker) {
		skipMsg = "testdb: no Docker engine and TASKER_TEST_DATABASE_URL unset; integration tests need one of them (" + err.Error() + ")"
		return nil
	}
	if err != nil {
		return err
	}
	server, serverURL = srv, srv.URL
	return nil
}

func createDatabase(admin, name, from string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := db.ConnectOne(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// CREATE DATABASE ... TEMPLATE fails while another session is connected to the template;
	// concurrent clones from parallel tests are serialized by retrying.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{from}.Sanitize()))
		if err == nil || attempt >= 50 || !strings.Contains(err.Error(), "is being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(admin, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.ConnectOne(ctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
