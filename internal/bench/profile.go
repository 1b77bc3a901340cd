package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
)

// profiler writes a CPU profile and an allocation profile per phase (the first run of each
// phase only), named after the --cpuprofile / --memprofile paths with the phase inserted before
// the extension: cpu.pprof → cpu.worker.pprof. The allocation profile of a phase is written
// together with a ".base" profile taken when the phase started; compare them with
// `go tool pprof -sample_index=alloc_space -base mem.worker.base.pprof mem.worker.pprof`.
type profiler struct {
	cpuPath, memPath string
	done             map[string]bool
	written          []string
}

// memProfileRate is the allocation sampling rate used when --memprofile is given (one sample
// per 4 KiB allocated instead of Go's default 512 KiB), so small per-step allocations show.
const memProfileRate = 4096

func newProfiler(cpuPath, memPath string) *profiler {
	if memPath != "" {
		runtime.MemProfileRate = memProfileRate
	}
	return &profiler{cpuPath: cpuPath, memPath: memPath, done: map[string]bool{}}
}

// start begins profiling phase and returns the function that ends it. It does nothing for a
// phase already profiled.
func (p *profiler) start(phase string) (stop func() error, err error) {
	noop := func() error { return nil }
	if p == nil || (p.cpuPath == "" && p.memPath == "") || p.done[phase] {
		return noop, nil
	}
	p.done[phase] = true
	var cpuFile *os.File
	if p.cpuPath != "" {
		path := phasePath(p.cpuPath, phase)
		if cpuFile, err = create(path); err != nil {
			return noop, err
		}
		if err := pprof.StartCPUProfile(cpuFile); err != nil {
			cpuFile.Close()
			return noop, fmt.Errorf("bench: cpu profile: %w", err)
		}
		p.written = append(p.written, path)
	}
	if p.memPath != "" {
		path := phasePath(p.memPath, phase+".base")
		if err := writeAllocs(path); err != nil {
			return noop, err
		}
		p.written = append(p.written, path)
	}
	return func() error {
		var errs []error
		if cpuFile != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpuFile.Close())
		}
		if p.memPath != "" {
			path := phasePath(p.memPath, phase)
			errs = append(errs, writeAllocs(path))
			p.written = append(p.written, path)
		}
		return errors.Join(errs...)
	}, nil
}

func writeAllocs(path string) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile is as of the last collection
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("bench: allocation profile: %w", err)
	}
	return f.Close()
}

func create(path string) (*os.File, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return os.Create(path)
}

// phasePath inserts "."+phase before the extension of path.
func phasePath(path, phase string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + phase + ext
}
