package integration

import (
	"context"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/orchestration"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/worker"
)

// faultProxy forwards loopback TCP connections to a PostgreSQL server and can drop traffic
// silently, as a firewall or NAT that lost its state does: no RST, no FIN, bytes just vanish.
// Unlike a kernel-level drop, the client's TCP peer (the proxy) keeps acknowledging, so only
// the client's own deadlines can notice; this isolates them from TCP keepalive.
type faultProxy struct {
	ln     net.Listener
	target string
	drop   atomic.Bool // new connections are dead from the start

	mu    sync.Mutex
	flows []*proxyFlow
}

type proxyFlow struct {
	client, server net.Conn
	dead           atomic.Bool
}

// newFaultProxy listens on 127.0.0.1 and forwards to the host:port of rawURL; it returns the
// URL to connect through it.
func newFaultProxy(t *testing.T, rawURL string) (*faultProxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: u.Host}
	go p.accept()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *faultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		f := &proxyFlow{client: c, server: s}
		f.dead.Store(p.drop.Load())
		p.mu.Lock()
		p.flows = append(p.flows, f)
		p.mu.Unlock()
		go f.pipe(c, s)
		go f.pipe(s, c)
	}
}

// pipe copies src to dst until either side closes; once the flow is dead its bytes are read
// and thrown away.
func (f *proxyFlow) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !f.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if !f.dead.Load() {
				f.client.Close()
				f.server.Close()
			}
			return
		}
	}
}

// blackhole kills every flow silently and makes new ones dead too (a partition).
func (p *faultProxy) blackhole() {
	p.drop.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.flows {
		f.dead.Store(true)
	}
}

// heal lets new connections through again; the flows killed before stay dead, as they do
// behind a NAT that forgot them.
func (p *faultProxy) heal() { p.drop.Store(false) }

func (p *faultProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.flows {
		f.client.Close()
		f.server.Close()
	}
}

// A worker and an orchestrator whose database connections are silently dropped (no RST, the
// old flows stay dead after the heal) complete work again within seconds of the heal: every
// database call of their loops runs under DBTimeout and a connection that hit it is replaced.
// Without the deadlines the worker's fetch loop waits on a dead connection forever.
func TestSilentDropRecovery(t *testing.T) {
	dbURL, pool := testdb.New(t)
	ctx := context.Background()
	reg := orchLinearSetup(t, pool)
	proxy, viaProxy := newFaultProxy(t, dbURL)
	connect := func(app string) *pgxpool.Pool {
		t.Helper()
		cfg, err := db.Config(viaProxy, db.WithSession(db.Session{AppName: app, ConnectTimeout: 2 * time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		p, err := db.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	const callTimeout = 2 * time.Second
	wpool, opool := connect("tasker-worker"), connect("tasker-orchestrator")
	wkStartResolver(t, wpool, []string{"orch_linear"}, reg, func(c *worker.Config) {
		c.PollInterval, c.DBTimeout = 100*time.Millisecond, callTimeout
	})
	o := orchNew(t, opool, func(c *orchestration.Config) { c.DBTimeout = callTimeout })
	orchRun(t, o)
	creator := orchNew(t, pool, nil) // submits over the direct connection

	first := orchCreate(t, creator, orchRequest("orch_linear", "linear", `{"n": 2}`))
	orchWaitTask(t, pool, first.TaskUUID, 30*time.Second, state.TaskComplete)

	proxy.blackhole()
	time.Sleep(5 * time.Second) // longer than the call timeout: every loop is stuck or failing
	proxy.heal()
	healed := time.Now()
	second := orchCreate(t, creator, orchRequest("orch_linear", "linear", `{"n": 3}`))
	orchWaitTask(t, pool, second.TaskUUID, 30*time.Second, state.TaskComplete)
	t.Logf("silent drop of 5s: the next task (3 sequential steps) completed %s after the heal", time.Since(healed).Round(time.Millisecond))
	if got := orchScalar[int64](t, pool, `SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = $1 AND attempts = 1`, second.TaskUUID); got != 3 {
		t.Errorf("%d of 3 steps ran exactly once", got)
	}
}
