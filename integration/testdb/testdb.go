// Package testdb gives integration tests a migrated PostgreSQL database.
//
// Where the server comes from:
//   - TASKER_TEST_DATABASE_URL set: that server; each test gets a fresh database on it.
//   - otherwise testcontainers-go starts TASKER_TEST_PG_IMAGE (default DefaultImage, a public
//     PostgreSQL image with PGMQ). Images built by scripts/build-pg-image.sh have no entrypoint;
//     they are started with our own command (initdb, pg_hba for the Docker bridge, postgres).
//   - neither Docker nor a URL: tests are skipped with a message saying so.
//
// A template database is migrated once per test binary; New clones it per test.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/migrations"
)

// DefaultImage is used when TASKER_TEST_PG_IMAGE is unset: PostgreSQL 17 with PGMQ 1.5.1.
const DefaultImage = "ghcr.io/pgmq/pg17-pgmq:v1.5.1"

// LocalImage is the name scripts/build-pg-image.sh gives the image it builds.
const LocalImage = "tasker-go/postgres:15"

var (
	once      sync.Once
	setupErr  error
	skipMsg   string
	serverURL string // admin URL of the server (database "postgres")
	template  string // name of the migrated template database
	container testcontainers.Container
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
	if container != nil {
		_ = container.Terminate(context.Background())
	}
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
	return withDatabase(serverURL, name)
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
	return withDatabase(serverURL, name)
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
	pool, err := db.Connect(ctx, withDatabase(serverURL, template))
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
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	image := os.Getenv("TASKER_TEST_PG_IMAGE")
	if image == "" {
		image = DefaultImage
	}
	var opts []testcontainers.ContainerCustomizer
	opts = append(opts, testcontainers.WithExposedPorts("5432/tcp"))
	if raw(image) {
		// The imported Debian image has no entrypoint: initialise and start the server ourselves.
		script := `set -e
initdb -D /tmp/pgdata -U postgres --auth=trust -E UTF8 >/tmp/initdb.log
echo "host all all 0.0.0.0/0 trust" >> /tmp/pgdata/pg_hba.conf
exec postgres -D /tmp/pgdata -c listen_addresses='*' -c unix_socket_directories=/tmp -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`
		opts = append(opts,
			testcontainers.WithCmd("bash", "-c", script),
			testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").WithStartupTimeout(2*time.Minute)),
		)
	} else {
		opts = append(opts,
			testcontainers.WithEnv(map[string]string{"POSTGRES_PASSWORD": "postgres", "POSTGRES_HOST_AUTH_METHOD": "trust"}),
			testcontainers.WithWaitStrategy(wait.ForListeningPort("5432/tcp").WithStartupTimeout(2*time.Minute)),
		)
	}
	c, err := testcontainers.Run(ctx, image, opts...)
	if err != nil {
		if c != nil {
			_ = c.Terminate(context.Background())
		}
		if isNoDocker(err) {
			skipMsg = "testdb: no Docker engine and TASKER_TEST_DATABASE_URL unset; integration tests need one of them (" + err.Error() + ")"
			return nil
		}
		return fmt.Errorf("start postgres container %s: %w (build the local image with `make pg-image` and set TASKER_TEST_PG_IMAGE=%s)", image, err, LocalImage)
	}
	container = c
	host, err := c.Host(ctx)
	if err != nil {
		return err
	}
	port, err := c.MappedPort(ctx, "5432/tcp")
	if err != nil {
		return err
	}
	serverURL = fmt.Sprintf("postgres://postgres:postgres@%s:%s/postgres?sslmode=disable", host, port.Port())
	// A log line alone races with initdb's own restart: wait until a real connection works.
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := db.ConnectOne(ctx, serverURL)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres container never accepted a connection: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func raw(image string) bool {
	return os.Getenv("TASKER_TEST_PG_RAW") == "1" || strings.HasPrefix(image, "tasker-go/")
}

func isNoDocker(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot connect to the Docker daemon") ||
		strings.Contains(s, "docker host") || strings.Contains(s, "rootless Docker not found") ||
		strings.Contains(s, "failed to create Docker provider")
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

func withDatabase(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + name
	return u.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
