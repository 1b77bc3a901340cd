// Package pgcontainer starts a disposable PostgreSQL server in Docker through testcontainers-go,
// for the integration tests, the demo and tasker-bench.
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
	"net"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
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
	URL string
	// DirectURL reaches the server at its address on the Docker bridge when the host can
	// (Linux), else it is URL: a mapped port may be forwarded by docker-proxy, a user-space
	// process that costs a few hundred microseconds of CPU per round trip, which measurements
	// must not count.
	DirectURL string
	container testcontainers.Container
}

// Image returns TASKER_TEST_PG_IMAGE, or DefaultImage.
func Image() string {
	if v := os.Getenv("TASKER_TEST_PG_IMAGE"); v != "" {
		return v
	}
	return DefaultImage
}

// Options choose how the server is configured.
type Options struct {
	// Durable keeps PostgreSQL's crash-safe defaults: fsync, synchronous_commit and
	// full_page_writes on. Without it a local image runs with all three off, which is faster and
	// enough for tests (an image following the official conventions keeps its own settings).
	Durable bool
	// StatStatements preloads pg_stat_statements (shared_preload_libraries), so
	// `CREATE EXTENSION pg_stat_statements` works and server-side statement times can be read.
	StatStatements bool
}

// Start runs image with Options{} (the test setup) and waits until it accepts connections.
// Ryuk (the reaper) is disabled unless the caller chose otherwise: its image cannot be pulled on
// air-gapped machines. The caller must Stop the server.
func Start(ctx context.Context, image string) (*Server, error) {
	return StartWith(ctx, image, Options{})
}

// StartDurable runs image with the settings users run (Durable) and pg_stat_statements
// preloaded, for measurements.
func StartDurable(ctx context.Context, image string) (*Server, error) {
	return StartWith(ctx, image, Options{Durable: true, StatStatements: true})
}

// StartWith runs image configured by o and waits until it accepts connections. The caller must
// Stop the server.
func StartWith(ctx context.Context, image string, o Options) (*Server, error) {
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	opts := []testcontainers.ContainerCustomizer{testcontainers.WithExposedPorts("5432/tcp")}
	settings := o.settings()
	if raw(image) {
		script := `set -e
initdb -D /tmp/pgdata -U postgres --auth=trust -E UTF8 >/tmp/initdb.log
echo "host all all 0.0.0.0/0 trust" >> /tmp/pgdata/pg_hba.conf
exec postgres -D /tmp/pgdata -c listen_addresses='*' -c unix_socket_directories=/tmp -c max_connections=400`
		for _, kv := range settings {
			script += " -c " + kv
		}
		if o.Durable {
			// A durable server writes and syncs its WAL on a volume, a directory of the host's
			// file system: the container's own root may be a FUSE overlay (fuse-overlayfs) whose
			// every write and fsync goes through a user-space process, which no deployment has.
			script = strings.ReplaceAll(script, "/tmp/pgdata", durableDataDir+"/data")
			script = "chown postgres " + durableDataDir + " && exec su -p postgres -c " + shellQuote(script)
			opts = append(opts, testcontainers.WithMounts(testcontainers.VolumeMount("", durableDataDir)),
				testcontainers.WithConfigModifier(func(c *container.Config) { c.User = "root" }))
		}
		opts = append(opts,
			testcontainers.WithCmd("bash", "-c", script),
			testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").WithStartupTimeout(2*time.Minute)),
		)
	} else {
		opts = append(opts,
			testcontainers.WithEnv(map[string]string{"POSTGRES_PASSWORD": "postgres", "POSTGRES_HOST_AUTH_METHOD": "trust"}),
			testcontainers.WithWaitStrategy(wait.ForListeningPort("5432/tcp").WithStartupTimeout(2*time.Minute)),
		)
		if o.StatStatements {
			opts = append(opts, testcontainers.WithCmd("postgres", "-c", "shared_preload_libraries=pg_stat_statements"))
		}
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
	s.DirectURL = s.URL
	if ip, err := c.ContainerIP(ctx); err == nil && ip != "" {
		if nc, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "5432"), time.Second); err == nil {
			_ = nc.Close()
			s.DirectURL = fmt.Sprintf("postgres://postgres:postgres@%s/postgres?sslmode=disable", net.JoinHostPort(ip, "5432"))
		}
	}
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

// ContainerID is the Docker container's full ID.
func (s *Server) ContainerID() string { return s.container.GetContainerID() }

// HostPID is the process ID, in the Docker host's PID namespace, of the container's main
// process (the postmaster: the start script execs it).
func (s *Server) HostPID(ctx context.Context) (int, error) {
	info, err := s.container.Inspect(ctx)
	if err != nil {
		return 0, fmt.Errorf("pgcontainer: inspect: %w", err)
	}
	if info.State == nil || info.State.Pid == 0 {
		return 0, errors.New("pgcontainer: the container has no running process")
	}
	return info.State.Pid, nil
}

// settings are the local image's server settings (-c name=value) beyond the fixed ones.
func (o Options) settings() []string {
	var out []string
	if !o.Durable {
		out = append(out, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	}
	if o.StatStatements {
		out = append(out, "shared_preload_libraries=pg_stat_statements")
	}
	return out
}

// durableDataDir is where a durable server's volume is mounted.
const durableDataDir = "/pgvol"

// shellQuote quotes s as one single-quoted shell word.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func raw(image string) bool {
	return os.Getenv("TASKER_TEST_PG_RAW") == "1" || strings.HasPrefix(image, "tasker-go/")
}

func isNoDocker(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot connect to the Docker daemon") ||
		strings.Contains(s, "docker host") || strings.Contains(s, "rootless Docker not found") ||
		strings.Contains(s, "failed to create Docker provider")
}
