package bench

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/db"
	"github.com/tasker-go/tasker/internal/pgcontainer"
)

func TestParseProcStat(t *testing.T) {
	// A command with spaces and a parenthesis, as /proc prints it.
	line := "4242 (postgres: a (b) c) S 4100 4242 4242 0 -1 4194560 7606 21417 50 311 11 8 56 74 20 0 1 0 43762 238690304 9958"
	p, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if p != (procStat{ppid: 4100, utime: 11, stime: 8, cutime: 56, cstime: 74}) {
		t.Fatalf("parsed %+v", p)
	}
	for _, bad := range []string{"", "1 (x) S 2 3", "1 (x) S notanumber 1 1 1 1 1 1 1 1 1 1 1 1 1"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
}

func TestProcTreeCPUCountsReapedAndLiveDescendants(t *testing.T) {
	stats := map[int]procStat{
		10: {ppid: 1, utime: 5, stime: 5, cutime: 30, cstime: 10}, // postmaster: 10 own + 40 reaped
		11: {ppid: 10, utime: 7, stime: 3},                        // backend
		12: {ppid: 10, utime: 1, stime: 1, cutime: 2},             // backend with a reaped child
		13: {ppid: 12, utime: 4},                                  // grandchild
		20: {ppid: 1, utime: 1000},                                // unrelated
	}
	read := func(pid int) (procStat, error) {
		s, ok := stats[pid]
		if !ok {
			return procStat{}, os.ErrNotExist
		}
		return s, nil
	}
	list := func() ([]int, error) { return []int{1, 10, 11, 12, 13, 20, 99}, nil } // 1 and 99 vanished
	got, err := procTreeCPU(10, read, list)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(10+40+10+2+2+4) * time.Second / clockTicks; got != want {
		t.Fatalf("tree CPU = %s, want %s", got, want)
	}
	if _, err := procTreeCPU(77, read, list); err == nil {
		t.Fatal("a missing postmaster must be an error")
	}
}

func TestCgroupCPUFiles(t *testing.T) {
	v1 := "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n"
	files := cgroupCPUFiles(v1)
	if len(files) != 5 || files[0].path != "/sys/fs/cgroup/cpuacct/docker/abc/cpuacct.usage" || files[0].v2 {
		t.Fatalf("v1 files: %+v", files)
	}
	if last := files[len(files)-1]; !last.v2 || last.path != "/sys/fs/cgroup/unified/docker/abc/cpu.stat" {
		t.Fatalf("v2 fallback: %+v", last)
	}
	v2 := cgroupCPUFiles("0::/system.slice/docker-abc.scope\n")
	if len(v2) != 2 || v2[0].path != "/sys/fs/cgroup/system.slice/docker-abc.scope/cpu.stat" {
		t.Fatalf("v2 files: %+v", v2)
	}
	if len(cgroupCPUFiles("0::/\n")) != 0 {
		t.Fatal("the root cgroup is not the container's")
	}
	d, err := parseCPUStatUsage("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
	if err != nil || d != 1500*time.Microsecond {
		t.Fatalf("usage = %s, %v", d, err)
	}
	if _, err := parseCPUStatUsage("user_usec 1\n"); err == nil {
		t.Fatal("cpu.stat without usage_usec accepted")
	}
}

func TestPlausibleCPU(t *testing.T) {
	if !plausibleCPU(1900*time.Millisecond, time.Second, 2) {
		t.Error("1.9s on 2 CPUs in 1s is possible")
	}
	if plausibleCPU(3*time.Second, time.Second, 2) {
		t.Error("3s on 2 CPUs in 1s is not")
	}
	if plausibleCPU(-time.Millisecond, time.Second, 2) {
		t.Error("negative CPU is not")
	}
}

func TestRiverRatios(t *testing.T) {
	r := riverRatios(900, 4500, 48, 3)
	if r.WorkerOverRiver != 0.2 || r.StageOverHop != 4 {
		t.Fatalf("ratios %+v", r)
	}
	r = riverRatios(900, 0, 0, 3)
	if !math.IsNaN(r.WorkerOverRiver) || !math.IsNaN(r.StageOverHop) {
		t.Fatalf("missing figures must give NaN: %+v", r)
	}
}

func TestRecorderPrefixesTheNonDurablePass(t *testing.T) {
	r := newRecorder()
	r.add("1. PGMQ floor", "floor.cycles_per_s", "cycles", "c/s", 100)
	r.keyPrefix, r.sectionPrefix = DurabilityOffKeyPrefix, durabilityOffSection
	r.add("1. PGMQ floor", "floor.cycles_per_s", "cycles", "c/s", 300)
	ms := r.finish()
	if len(ms) != 2 || ms[0].Key != "floor.cycles_per_s" || ms[0].Median != 100 {
		t.Fatalf("durable figure: %+v", ms)
	}
	if ms[1].Key != "durability_off.floor.cycles_per_s" || !strings.HasPrefix(ms[1].Section, "9. durability off · 1.") || ms[1].Median != 300 {
		t.Fatalf("non-durable figure: %+v", ms[1])
	}
}

func TestDurabilityPassesAndSettings(t *testing.T) {
	c := DefaultConfig()
	if got := durabilityPasses(c); len(got) != 1 || got[0] != DurabilityOn {
		t.Fatalf("default passes %v", got)
	}
	c.Durability = DurabilityBoth
	if got := durabilityPasses(c); len(got) != 2 || got[0] != DurabilityOn || got[1] != DurabilityOff {
		t.Fatalf("both: %v", got)
	}
	c.DatabaseURL = "postgres://x"
	if got := durabilityPasses(c); len(got) != 1 {
		t.Fatalf("a DATABASE_URL server is measured once: %v", got)
	}
	on := map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
	if !durable(on) {
		t.Fatal("crash-safe settings judged not durable")
	}
	for k, v := range map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"} {
		s := map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
		s[k] = v
		if durable(s) {
			t.Errorf("%s=%s judged durable", k, v)
		}
	}
}

// TestDurableServerAndDBCPU starts the image durable and checks its settings, that
// pg_stat_statements is preloaded, and that both ways of reading the server's CPU see the work
// of a query and agree.
func TestDurableServerAndDBCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a container")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := pgcontainer.StartDurable(ctx, pgcontainer.Image())
	if errors.Is(err, pgcontainer.ErrNoDocker) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	s := &server{adminURL: srv.URL, source: "docker", container: srv}
	s.cpu = serverCPUMeter(ctx, s)
	info := s.info(ctx)
	if !info.Durable || info.Settings["shared_preload_libraries"] != "pg_stat_statements" {
		t.Fatalf("settings %v", info.Settings)
	}
	if !s.cpu.ok() {
		t.Skipf("no way to read the container's CPU here: %s", s.cpu.note)
	}
	pid, err := srv.HostPID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	procRead := func() (time.Duration, error) { return procTreeCPU(pid, readProcStat, listPIDs) }
	conn, err := db.ConnectOne(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION pg_stat_statements"); err != nil {
		t.Fatalf("pg_stat_statements is not preloaded: %v", err)
	}
	// A durable server's data is on its volume, not on the container's (overlay) root.
	var dataDir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir); err != nil || dataDir != "/pgvol/data" {
		t.Fatalf("data_directory %q (%v); want /pgvol/data", dataDir, err)
	}
	direct, err := db.ConnectOne(ctx, srv.DirectURL)
	if err != nil {
		t.Fatalf("direct URL %s: %v", srv.DirectURL, err)
	}
	_ = direct.Close(ctx)
	a0, _ := s.cpu.sample()
	p0, err := procRead()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 8000000)").Scan(&n); err != nil || n != 8_000_000 {
		t.Fatalf("query: %d, %v", n, err)
	}
	a1, _ := s.cpu.sample()
	p1, _ := procRead()
	meter, proc := a1-a0, p1-p0
	t.Logf("%s: %s; /proc: %s", s.cpu.method, meter, proc)
	if proc < 200*time.Millisecond || meter < 200*time.Millisecond {
		t.Fatalf("8M rows counted with %s (meter) / %s (/proc) of server CPU", meter, proc)
	}
	if diff := (meter - proc).Abs(); diff > meter/5+100*time.Millisecond {
		t.Fatalf("meter %s and /proc %s disagree", meter, proc)
	}
}
