package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// dbCPUMeter reads the CPU time the PostgreSQL server's processes have used so far, measured
// directly (not by subtracting the bench's own share from the machine's). It works for the
// container the bench started: from the container's cgroup CPU accounting when readable, else
// from /proc (the postmaster's own time, its reaped children's time, and its live
// descendants' time).
type dbCPUMeter struct {
	method string // how it reads; empty when unavailable
	note   string // why it is unavailable
	read   func() (time.Duration, error)
}

// unavailableDBCPU is a meter that reads nothing, with the reason.
func unavailableDBCPU(note string) *dbCPUMeter { return &dbCPUMeter{note: note} }

func (m *dbCPUMeter) ok() bool { return m != nil && m.read != nil }

// sample is the server's CPU time so far; false when the meter is unavailable or the read fails.
func (m *dbCPUMeter) sample() (time.Duration, bool) {
	if !m.ok() {
		return 0, false
	}
	d, err := m.read()
	return d, err == nil
}

// newDBCPUMeter finds a way to read the CPU time of the processes of the container whose main
// process (the postmaster) is hostPID in this machine's PID namespace.
func newDBCPUMeter(hostPID int) *dbCPUMeter {
	var notes []string
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", hostPID)); err == nil {
		for _, c := range cgroupCPUFiles(string(b)) {
			read := func() (time.Duration, error) { return readCgroupCPU(c) }
			if _, err := read(); err == nil {
				return &dbCPUMeter{method: "cgroup " + c.path, read: read}
			}
			notes = append(notes, c.path+" unreadable")
		}
	} else {
		notes = append(notes, err.Error())
	}
	read := func() (time.Duration, error) { return procTreeCPU(hostPID, readProcStat, listPIDs) }
	if _, err := read(); err == nil {
		return &dbCPUMeter{method: fmt.Sprintf("/proc process tree of the postmaster (pid %d)", hostPID), read: read}
	} else {
		notes = append(notes, err.Error())
	}
	return unavailableDBCPU("database CPU unavailable: " + strings.Join(notes, "; "))
}

// cgroupFile is a file holding a cgroup's cumulative CPU time.
type cgroupFile struct {
	path string
	v2   bool // cpu.stat usage_usec, else cpuacct.usage (ns)
}

// cgroupCPUFiles lists, most specific first, the files that may hold the CPU time of the
// cgroup a /proc/<pid>/cgroup content names: cgroup v1 cpuacct.usage under the usual mount
// points, then cgroup v2 cpu.stat (unified or hybrid mount).
func cgroupCPUFiles(procCgroup string) []cgroupFile {
	var out []cgroupFile
	var v2path string
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2path = parts[2]
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			if ctl == "cpuacct" {
				for _, mount := range []string{"cpuacct", "cpu,cpuacct", "cpuacct,cpu"} {
					out = append(out, cgroupFile{path: filepath.Join("/sys/fs/cgroup", mount, parts[2], "cpuacct.usage")})
				}
			}
		}
	}
	if v2path != "" && v2path != "/" {
		for _, mount := range []string{"", "unified"} {
			out = append(out, cgroupFile{path: filepath.Join("/sys/fs/cgroup", mount, v2path, "cpu.stat"), v2: true})
		}
	}
	return out
}

func readCgroupCPU(c cgroupFile) (time.Duration, error) {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return 0, err
	}
	if c.v2 {
		return parseCPUStatUsage(string(b))
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: %s: %w", c.path, err)
	}
	return time.Duration(ns), nil
}

// parseCPUStatUsage reads usage_usec from a cgroup v2 cpu.stat.
func parseCPUStatUsage(s string) (time.Duration, error) {
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "usage_usec" {
			us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, err
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	return 0, errors.New("bench: cpu.stat has no usage_usec")
}

// procStat is what the CPU accounting needs from /proc/<pid>/stat (times in clock ticks).
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// parseProcStat parses a /proc/<pid>/stat line; the command may hold spaces and parentheses.
func parseProcStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
	if len(f) < 15 {
		return procStat{}, errors.New("bench: short /proc stat")
	}
	var p procStat
	var err error
	nums := []*int64{&p.utime, &p.stime, &p.cutime, &p.cstime}
	for k, ptr := range nums {
		if *ptr, err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return procStat{}, err
		}
	}
	if p.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, err
	}
	return p, nil
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(string(b))
}

func listPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// procTreeCPU is the CPU time of root and of every process it started, living or exited: root's
// utime+stime, its cutime+cstime (children it has reaped, which a postmaster does for every
// backend that exits) and the utime+stime of its live descendants. A process that exits between
// two readings moves from the live sum to cutime+cstime, so differences stay right.
func procTreeCPU(root int, read func(int) (procStat, error), list func() ([]int, error)) (time.Duration, error) {
	rs, err := read(root)
	if err != nil {
		return 0, fmt.Errorf("bench: postmaster %d: %w", root, err)
	}
	ticks := rs.utime + rs.stime + rs.cutime + rs.cstime
	pids, err := list()
	if err != nil {
		return 0, err
	}
	children := map[int][]int{}
	stats := map[int]procStat{}
	for _, pid := range pids {
		if pid == root {
			continue
		}
		if s, err := read(pid); err == nil { // a process may exit while we read
			stats[pid] = s
			children[s.ppid] = append(children[s.ppid], pid)
		}
	}
	queue := children[root]
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		s := stats[pid]
		// A live child's own reaped children are added too; they are no backend's, but exact.
		ticks += s.utime + s.stime + s.cutime + s.cstime
		queue = append(queue, children[pid]...)
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// cpuWindow is the CPU time the database and the Go side used over one timed stretch.
type cpuWindow struct {
	db0, go0 time.Duration
	dbOK     bool
	t0       time.Time
	meter    *dbCPUMeter
	goCPU    func() time.Duration
}

func startCPUWindow(m *dbCPUMeter, goCPU func() time.Duration) *cpuWindow {
	w := &cpuWindow{meter: m, goCPU: goCPU, t0: time.Now()}
	w.db0, w.dbOK = m.sample()
	if goCPU != nil {
		w.go0 = goCPU()
	}
	return w
}

// cpuUse is what a window measured.
type cpuUse struct {
	Elapsed time.Duration
	DB      time.Duration
	DBOK    bool
	Go      time.Duration
}

func (w *cpuWindow) stop() cpuUse {
	u := cpuUse{Elapsed: time.Since(w.t0)}
	if db1, ok := w.meter.sample(); ok && w.dbOK {
		u.DB, u.DBOK = db1-w.db0, true
	}
	if w.goCPU != nil {
		u.Go = w.goCPU() - w.go0
	}
	return u
}

// plausibleCPU reports whether cpu could have been used in elapsed on ncpu CPUs (with room for
// the 10 ms granularity of /proc times and for readings taken a little apart).
func plausibleCPU(cpu, elapsed time.Duration, ncpu int) bool {
	return cpu >= 0 && cpu <= time.Duration(float64(elapsed)*float64(ncpu)*1.05)+50*time.Millisecond
}

// serverCPUMeter returns the meter for the server the bench runs on.
func serverCPUMeter(ctx context.Context, s *server) *dbCPUMeter {
	if s.container == nil {
		return unavailableDBCPU("database CPU per step unavailable: the server is " + s.source + ", not a container this bench started")
	}
	pid, err := s.container.HostPID(ctx)
	if err != nil {
		return unavailableDBCPU("database CPU per step unavailable: " + err.Error())
	}
	return newDBCPUMeter(pid)
}
