// Package pgcontainer starts a disposable PostgreSQL server in Docker through testcontainers-go,
// for the integration tests and the demo.
//
// Images built by scripts/build-pg-image.sh (name prefix "tasker-go/", or TASKER_TEST_PG_RAW=1)
// have no entrypoint: they are started with our own command (initdb, pg_hba for the Docker
// bridge, postgres). Any other image is assumed to follow the official postgres image's
// conventions (a public PGMQ image, for users with internet).
package pgcontainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/tasker-go/tasker/db"
)

// DefaultImage is used when TASKER_TEST_PG_IMAGE is unset: PostgreSQL 17 with PGMQ 1.5.1.
const DefaultImage = "ghcr.io/pgmq/pg17-pgmq:v1.5.1"

// LocalImage is the name scripts/build-pg-image.sh gives the image it builds.
const LocalImage = "tasker-go/postgres:15"

// ErrNoDocker means no Docker engine could be reached.
var ErrNoDocker = errors.New("pgcontainer: no Docker engine")

// Server is a running container.
type Server struct {
	// URL reaches the server as superuser "postgres", database "postgres", through the mapped
	// port on the Docker host.
	URL       string
	container testcontainers.Container
}

// Image returns TASKER_TEST_PG_IMAGE, or DefaultImage.
func Image() string {
	if v := os.Getenv("TASKER_TEST_PG_IMAGE"); v != "" {
		return v
	}
	return DefaultImage
}

// Start runs image and waits until it accepts connections. Ryuk (the reaper) is disabled unless
// the caller chose otherwise: its image cannot be pulled on air-gapped machines. The caller
// must Stop the server.
func Start(ctx context.Context, image string) (*Server, error) {
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	opts := []testcontainers.ContainerCustomizer{testcontainers.WithExposedPorts("5432/tcp")}
	if raw(image) {
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
			return nil, fmt.Errorf("%w: %v", ErrNoDocker, err)
		}
		return nil, fmt.Errorf("pgcontainer: start %s: %w (build the local image with `make pg-image` and set TASKER_TEST_PG_IMAGE=%s)", image, err, LocalImage)
	}
	s := &Server{container: c}
	host, err := c.Host(ctx)
	if err != nil {
		s.Stop()
		return nil, err
	}
	port, err := c.MappedPort(ctx, "5432/tcp")
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.URL = fmt.Sprintf("postgres://postgres:postgres@%s:%s/postgres?sslmode=disable", host, port.Port())
	// A log line alone races with initdb's own restart: wait until a real connection works.
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := db.ConnectOne(ctx, s.URL)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
			if err == nil {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("pgcontainer: server never accepted a connection: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop terminates the container.
func (s *Server) Stop() {
	if s != nil && s.container != nil {
		_ = s.container.Terminate(context.Background())
	}
}

// Container exposes the underlying container (for fault injection in chaos tests).
func (s *Server) Container() testcontainers.Container { return s.container }

func raw(image string) bool {
	return os.Getenv("TASKER_TEST_PG_RAW") == "1" || strings.HasPrefix(image, "tasker-go/")
}

func isNoDocker(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot connect to the Docker daemon") ||
		strings.Contains(s, "docker host") || strings.Contains(s, "rootless Docker not found") ||
		strings.Contains(s, "failed to create Docker provider")
}
