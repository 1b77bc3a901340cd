package integration

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/integration/testdb"
)

// Every connection carries the process's application_name and the server-side bounds; a URL
// that sets them wins; TCP connections get TCP_USER_TIMEOUT and keepalive.
func TestSessionTuning(t *testing.T) {
	url := testdb.NewURL(t)
	ctx := context.Background()
	pool, err := db.Connect(ctx, url, db.WithSession(db.Session{
		AppName: "tasker-worker", StatementTimeout: 7 * time.Second, LockTimeout: 3 * time.Second,
		UserTimeout: 9 * time.Second, Keepalive: 4 * time.Second,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var app, stmt, lock, plans string
	if err := pool.QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('statement_timeout'),
		current_setting('lock_timeout'), current_setting('plan_cache_mode')`).Scan(&app, &stmt, &lock, &plans); err != nil {
		t.Fatal(err)
	}
	if app != "tasker-worker" || stmt != "7s" || lock != "3s" || plans != "force_generic_plan" {
		t.Errorf("application_name %q statement_timeout %q lock_timeout %q plan_cache_mode %q; want tasker-worker 7s 3s force_generic_plan", app, stmt, lock, plans)
	}
	// The server keeps alive and times out its side of the connection the same way.
	var srvIdle, srvUser string
	if err := pool.QueryRow(ctx, `SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_user_timeout')`).Scan(&srvIdle, &srvUser); err != nil {
		t.Fatal(err)
	}
	if srvIdle != "4" || srvUser != "9000" {
		t.Errorf("server tcp_keepalives_idle %q tcp_user_timeout %q; want 4 and 9000 (ms)", srvIdle, srvUser)
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nc := conn.Conn().PgConn().Conn()
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		conn.Release()
		t.Skipf("connection is %T, not TCP: socket options not checked", nc)
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var userTimeout, keepalive, keepIdle int
	var serr error
	_ = raw.Control(func(fd uintptr) {
		if runtime.GOOS != "linux" {
			return
		}
		userTimeout, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if serr == nil {
			keepalive, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		}
		if serr == nil {
			keepIdle, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		}
	})
	conn.Release()
	if serr != nil {
		t.Fatal(serr)
	}
	if userTimeout != 9000 || keepalive != 1 || keepIdle != 4 {
		t.Errorf("TCP_USER_TIMEOUT %d ms, SO_KEEPALIVE %d, TCP_KEEPIDLE %d s; want 9000, 1, 4", userTimeout, keepalive, keepIdle)
	}

	// A call that hits its deadline loses its connection: the pool does not hand it out again
	// (after a silent network drop it would hang the next caller too).
	one, err := db.Connect(ctx, url+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	var before, after int32
	if err := one.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = one.Exec(dctx, `SELECT pg_sleep(5)`)
	cancel()
	if err == nil {
		t.Fatal("pg_sleep(5) returned within a 200ms deadline")
	}
	if err := one.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Errorf("the connection that hit its deadline (backend %d) was reused", before)
	}

	// Settings in the URL win over the process's defaults.
	pool2, err := db.Connect(ctx, url+"&application_name=mine&statement_timeout=1234", db.WithAppName("tasker-cli"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool2.Close()
	if err := pool2.QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('statement_timeout'),
		current_setting('lock_timeout')`).Scan(&app, &stmt, &lock); err != nil {
		t.Fatal(err)
	}
	if app != "mine" || stmt != "1234ms" || lock != "15s" {
		t.Errorf("with URL settings: application_name %q statement_timeout %q lock_timeout %q; want mine 1234ms 15s", app, stmt, lock)
	}
}
