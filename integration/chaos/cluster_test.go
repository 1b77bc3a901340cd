package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	dcontainer "github.com/moby/moby/api/types/container"
	dnetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/tasker-go/tasker/db"
)

// Images and names.
const (
	defaultPGImage  = "tasker-go/postgres:15"
	defaultAppImage = "tasker-go/app:chaos"
	pgAlias         = "postgres"
	appDatabaseURL  = "postgres://postgres@" + pgAlias + ":5432/postgres?sslmode=disable"
	configPath      = "/app/chaos.toml"
)

// pgScript starts PostgreSQL from the raw local image, initializing the data directory only on
// the first start so that the container can be restarted. synchronous_commit stays on: a
// crash-restart must not lose acknowledged commits (fsync=off only matters for an OS crash).
const pgScript = `set -e
if [ ! -s /tmp/pgdata/PG_VERSION ]; then
  initdb -D /tmp/pgdata -U postgres --auth=trust -E UTF8 >/tmp/initdb.log
  echo "host all all 0.0.0.0/0 trust" >> /tmp/pgdata/pg_hba.conf
fi
exec postgres -D /tmp/pgdata -c listen_addresses='*' -c unix_socket_directories=/tmp -c max_connections=400 -c fsync=off -c full_page_writes=off`

// cluster is the Docker side of a chaos run: a private network, PostgreSQL, and app containers.
type cluster struct {
	t        *testing.T
	docker   *testcontainers.DockerClient
	net      *testcontainers.DockerNetwork
	subnet   netip.Prefix
	pgImage  string
	appImage string
	pg       testcontainers.Container
	pgIP     netip.Addr
	hostURL  string
	logDir   string

	mu     sync.Mutex
	apps   []*app
	nextIP int
	seq    map[string]int
}

// app is one worker or orchestrator container; killed ones are kept for their logs.
type app struct {
	Role     string // "worker" or "orchestrator"
	Name     string // worker-1, orchestrator-2, ... (also its network alias)
	WorkerID string // worker_<uuid> (workers)
	IP       netip.Addr
	c        testcontainers.Container
	Started  time.Time
	Killed   time.Time
}

func (a *app) id() string { return a.c.GetContainerID() }

// dockerAvailable reports whether a Docker engine answers, both to testcontainers and to the
// docker command (scripts/build-app-image.sh builds the app image with it).
func dockerAvailable(ctx context.Context) (*testcontainers.DockerClient, error) {
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker version: %v: %s", err, strings.TrimSpace(string(out)))
	}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{}); err != nil {
		_ = cli.Close()
		return nil, err
	}
	return cli, nil
}

func imageExists(ctx context.Context, cli *testcontainers.DockerClient, image string) bool {
	_, err := cli.ImageInspect(ctx, image)
	return err == nil
}

// repoRoot is the module root (two levels above this file's directory).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// buildAppImage runs scripts/build-app-image.sh (static binaries, FROM scratch, no registry).
func buildAppImage(t *testing.T, image string) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "build-app-image.sh"))
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "TASKER_APP_IMAGE="+image)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chaos: build app image: %v\n%s", err, out)
	}
	t.Logf("chaos: %s", strings.TrimSpace(string(out)))
}

// newCluster creates the network and starts PostgreSQL on it, reachable from the host on a
// fixed port (so the URL survives a restart) and from the containers as "postgres".
func newCluster(t *testing.T, ctx context.Context, cli *testcontainers.DockerClient, pgImage, appImage, logDir string) *cluster {
	t.Helper()
	c := &cluster{t: t, docker: cli, pgImage: pgImage, appImage: appImage, logDir: logDir, nextIP: 10, seq: map[string]int{}}
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		c.subnet = netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 200+rand.IntN(50), rand.IntN(256)))
		gw := c.subnet.Addr().Next()
		c.net, err = tcnetwork.New(ctx, tcnetwork.WithIPAM(&dnetwork.IPAM{
			Driver: "default",
			Config: []dnetwork.IPAMConfig{{Subnet: c.subnet, Gateway: gw}},
		}))
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("chaos: create network: %v", err)
	}
	t.Cleanup(c.teardown)

	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	c.pgIP = c.allocIP()
	c.pg, err = testcontainers.Run(ctx, pgImage,
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *dcontainer.HostConfig) {
			hc.PortBindings = dnetwork.PortMap{dnetwork.MustParsePort("5432/tcp"): {{HostPort: strconv.Itoa(port)}}}
		}),
		testcontainers.WithCmd("bash", "-c", pgScript),
		tcnetwork.WithNetwork([]string{pgAlias}, c.net),
		c.staticIP(c.pgIP),
		testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").WithStartupTimeout(2*time.Minute)),
	)
	if err != nil {
		t.Fatalf("chaos: start PostgreSQL (%s): %v", pgImage, err)
	}
	c.hostURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := c.waitDB(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	return c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *cluster) allocIP() netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.subnet.Addr().As4()
	a[3] = byte(c.nextIP)
	c.nextIP++
	return netip.AddrFrom4(a)
}

// staticIP pins the container's address on the chaos network, so a partitioned container can be
// reconnected with the address its TCP connections use.
func (c *cluster) staticIP(ip netip.Addr) testcontainers.CustomizeRequestOption {
	name := c.net.Name
	return testcontainers.WithEndpointSettingsModifier(func(settings map[string]*dnetwork.EndpointSettings) {
		s := settings[name]
		if s == nil {
			s = &dnetwork.EndpointSettings{}
			settings[name] = s
		}
		s.IPAMConfig = &dnetwork.EndpointIPAMConfig{IPv4Address: ip}
	})
}

// waitDB waits until the host can run a query.
func (c *cluster) waitDB(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := db.ConnectOne(cctx, c.hostURL)
		if err == nil {
			err = conn.Ping(cctx)
			_ = conn.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: PostgreSQL not reachable at %s after %s: %w", c.hostURL, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hostPool opens a pool on the host URL.
func (c *cluster) hostPool(ctx context.Context, maxConns int32) *pgxpool.Pool {
	pc, err := db.Config(c.hostURL)
	if err != nil {
		c.t.Fatal(err)
	}
	pc.MaxConns = maxConns
	pool, err := db.ConnectConfig(ctx, pc)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(pool.Close)
	return pool
}

// startApp starts a worker ("tasker-chaos worker") or an orchestrator ("tasker orchestrator")
// and waits until it logged that it runs.
func (c *cluster) startApp(ctx context.Context, role string, p profile) (*app, error) {
	c.mu.Lock()
	c.seq[role]++
	a := &app{Role: role, Name: fmt.Sprintf("%s-%d", role, c.seq[role])}
	c.mu.Unlock()
	a.IP = c.allocIP()
	env := map[string]string{
		"DATABASE_URL":       appDatabaseURL,
		"TASKER_CONFIG_PATH": configPath,
		"TASKER_LOG_FORMAT":  "json",
	}
	var entry []string
	var ready string
	switch role {
	case "worker":
		a.WorkerID = "worker_" + uuid.Must(uuid.NewV7()).String()
		env["TASKER_WORKER_ID"] = a.WorkerID
		env["TASKER_NAMESPACES"] = strings.Join(namespaces, ",")
		env["CHAOS_SLEEP_MIN_MS"] = strconv.Itoa(p.SleepMinMS)
		env["CHAOS_SLEEP_MAX_MS"] = strconv.Itoa(p.SleepMaxMS)
		env["CHAOS_SLOW_PERMILLE"] = strconv.Itoa(p.SlowPermille)
		env["CHAOS_SLOW_MS"] = strconv.Itoa(p.SlowMS)
		entry, ready = []string{"/usr/local/bin/tasker-chaos", "worker"}, "worker started"
	case "orchestrator":
		entry, ready = []string{"/usr/local/bin/tasker", "orchestrator", "--log-level", "info"}, "orchestrator started"
	default:
		return nil, fmt.Errorf("unknown role %q", role)
	}
	var err error
	a.c, err = testcontainers.Run(ctx, c.appImage,
		testcontainers.WithEntrypoint(entry...),
		testcontainers.WithEnv(env),
		testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader: strings.NewReader(chaosTOML()), ContainerFilePath: configPath, FileMode: 0o644,
		}),
		tcnetwork.WithNetwork([]string{a.Name}, c.net),
		c.staticIP(a.IP),
		testcontainers.WithWaitStrategy(wait.ForLog(ready).WithStartupTimeout(2*time.Minute)),
	)
	if a.c != nil {
		c.mu.Lock()
		c.apps = append(c.apps, a)
		c.mu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: start %s: %w", a.Name, err)
	}
	a.Started = time.Now()
	return a, nil
}

// kill sends SIGKILL to the app's process (no shutdown, no drain).
func (c *cluster) kill(ctx context.Context, a *app) error {
	if _, err := c.docker.ContainerKill(ctx, a.id(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return err
	}
	a.Killed = time.Now()
	return nil
}

// restartDB crashes PostgreSQL (SIGKILL), keeps it down for downtime, starts it again and waits
// until the host reaches it. It returns when the server was killed and when it answered again.
func (c *cluster) restartDB(ctx context.Context, downtime time.Duration) (killed, back time.Time, err error) {
	if _, err = c.docker.ContainerKill(ctx, c.pg.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return
	}
	killed = time.Now()
	for i := 0; i < 100; i++ {
		st, serr := c.pg.State(ctx)
		if serr == nil && !st.Running {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(downtime)
	if err = c.pg.Start(ctx); err != nil {
		return
	}
	err = c.waitDB(ctx, 2*time.Minute)
	back = time.Now()
	return
}

// partition disconnects a from the chaos network; heal reconnects it with the same address and
// alias, so its TCP connections to PostgreSQL can resume.
func (c *cluster) partition(ctx context.Context, a *app) error {
	_, err := c.docker.NetworkDisconnect(ctx, c.net.ID, client.NetworkDisconnectOptions{Container: a.id(), Force: true})
	return err
}

func (c *cluster) heal(ctx context.Context, a *app) error {
	_, err := c.docker.NetworkConnect(ctx, c.net.ID, client.NetworkConnectOptions{
		Container: a.id(),
		EndpointConfig: &dnetwork.EndpointSettings{
			Aliases:    []string{a.Name},
			IPAMConfig: &dnetwork.EndpointIPAMConfig{IPv4Address: a.IP},
		},
	})
	return err
}

// silentDrop makes a's network namespace drop every packet that leaves or reaches it (but
// loopback) without a trace: no RST, no ICMP, as a firewall or NAT that lost its state does.
func (c *cluster) silentDrop(ctx context.Context, a *app) error {
	return c.inNetns(ctx, a,
		[]string{"iptables", "-w", "-I", "INPUT", "!", "-i", "lo", "-j", "DROP"},
		[]string{"iptables", "-w", "-I", "OUTPUT", "!", "-o", "lo", "-j", "DROP"})
}

// liftDrop lets a's new connections through again but keeps every TCP flow that existed during
// the drop dead: those stay dropped without a trace, so only a client that gives up on them
// (deadlines, TCP keepalive, TCP_USER_TIMEOUT) gets back to work.
func (c *cluster) liftDrop(ctx context.Context, a *app) error {
	pid, err := c.pid(ctx, a)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "nsenter", "-t", pid, "-n", "ss", "-Htan").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ss in %s: %v: %s", a.Name, err, out)
	}
	var cmds [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line) // State Recv-Q Send-Q Local:Port Peer:Port
		if len(f) < 5 || f[0] == "LISTEN" {
			continue
		}
		i := strings.LastIndexByte(f[3], ':')
		if i < 0 {
			continue
		}
		port := f[3][i+1:]
		cmds = append(cmds,
			[]string{"iptables", "-w", "-I", "INPUT", "-p", "tcp", "--dport", port, "-j", "DROP"},
			[]string{"iptables", "-w", "-I", "OUTPUT", "-p", "tcp", "--sport", port, "-j", "DROP"})
	}
	cmds = append(cmds,
		[]string{"iptables", "-w", "-D", "INPUT", "!", "-i", "lo", "-j", "DROP"},
		[]string{"iptables", "-w", "-D", "OUTPUT", "!", "-o", "lo", "-j", "DROP"})
	return c.inNetns(ctx, a, cmds...)
}

// pid is the host pid of a's main process.
func (c *cluster) pid(ctx context.Context, a *app) (string, error) {
	res, err := c.docker.ContainerInspect(ctx, a.id(), client.ContainerInspectOptions{})
	if err != nil {
		return "", err
	}
	if res.Container.State == nil || res.Container.State.Pid == 0 {
		return "", fmt.Errorf("%s has no running process", a.Name)
	}
	return strconv.Itoa(res.Container.State.Pid), nil
}

// inNetns runs each command in a's network namespace (nsenter; the app image has no shell).
func (c *cluster) inNetns(ctx context.Context, a *app, cmds ...[]string) error {
	pid, err := c.pid(ctx, a)
	if err != nil {
		return err
	}
	for _, cmd := range cmds {
		args := append([]string{"-t", pid, "-n"}, cmd...)
		if out, err := exec.CommandContext(ctx, "nsenter", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("nsenter %s: %v: %s", strings.Join(cmd, " "), err, out)
		}
	}
	return nil
}

// freeze pauses every process of a (cgroup freezer): a stalled VM or a long GC pause. Its
// connections stay open; thaw resumes it where it stopped.
func (c *cluster) freeze(ctx context.Context, a *app) error {
	_, err := c.docker.ContainerPause(ctx, a.id(), client.ContainerPauseOptions{})
	return err
}

func (c *cluster) thaw(ctx context.Context, a *app) error {
	_, err := c.docker.ContainerUnpause(ctx, a.id(), client.ContainerUnpauseOptions{})
	return err
}

// live returns the apps of role that were not killed.
func (c *cluster) live(role string) []*app {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*app
	for _, a := range c.apps {
		if a.Role == role && a.Killed.IsZero() {
			out = append(out, a)
		}
	}
	return out
}

func (c *cluster) all() []*app {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*app(nil), c.apps...)
}

// stopApps stops the live apps gracefully (SIGTERM, so workers log their final metrics).
func (c *cluster) stopApps(ctx context.Context) {
	var wg sync.WaitGroup
	for _, a := range c.all() {
		if !a.Killed.IsZero() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := 15 * time.Second
			_ = a.c.Stop(ctx, &timeout)
		}()
	}
	wg.Wait()
}

// logs returns an app's combined output.
func logsOf(ctx context.Context, c testcontainers.Container) ([]byte, error) {
	rc, err := c.Logs(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, rc)
	return buf.Bytes(), err
}

// saveLogs writes every container's output under logDir and returns the apps' logs by name.
func (c *cluster) saveLogs(ctx context.Context) map[string][]byte {
	out := map[string][]byte{}
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		c.t.Logf("chaos: %v", err)
	}
	save := func(name string, ctr testcontainers.Container) []byte {
		b, err := logsOf(ctx, ctr)
		if err != nil {
			c.t.Logf("chaos: logs of %s: %v", name, err)
		}
		if werr := os.WriteFile(filepath.Join(c.logDir, name+".log"), b, 0o644); werr != nil {
			c.t.Logf("chaos: %v", werr)
		}
		return b
	}
	if c.pg != nil {
		save("postgres", c.pg)
	}
	for _, a := range c.all() {
		out[a.Name] = save(a.Name, a.c)
	}
	return out
}

func (c *cluster) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, a := range c.all() {
		errs = append(errs, a.c.Terminate(ctx))
	}
	if c.pg != nil {
		errs = append(errs, c.pg.Terminate(ctx))
	}
	if c.net != nil {
		errs = append(errs, c.net.Remove(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		c.t.Logf("chaos: teardown: %v", err)
	}
}
