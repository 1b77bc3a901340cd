package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// riverDir is the River peer's module, relative to the tasker-go module root. It is a module of
// its own so tasker-go does not depend on River.
const riverDir = "bench/peers/river"

// riverResult is what the River peer prints (see bench/peers/river).
type riverResult struct {
	River           string  `json:"river_version"`
	Jobs            int     `json:"jobs"`
	Workers         int     `json:"workers"`
	PoolConns       int     `json:"pool_conns"`
	FetchCooldownMs float64 `json:"fetch_cooldown_ms"`
	FetchPollMs     float64 `json:"fetch_poll_interval_ms"`
	InsertMs        float64 `json:"insert_ms"`
	JobsPerSec      float64 `json:"jobs_per_s"`
	JobsPerSecDB    float64 `json:"jobs_per_s_db"`
	Hops            int     `json:"hops"`
	HopMode         string  `json:"hop_mode"`
	HopP50Ms        float64 `json:"hop_p50_ms"`
	HopMeanMs       float64 `json:"hop_mean_ms"`
	HopP95Ms        float64 `json:"hop_p95_ms"`
	ThroughputNote  string  `json:"throughput_timing"`
	// DurabilityOff marks a run on the non-durable server of --durability=both or off.
	DurabilityOff bool `json:"durability_off,omitempty"`
}

// buildRiverPeer builds the River peer from sourceDir into dir and returns the binary's path.
// It needs River's modules: in the module cache or from the Go module proxy.
func buildRiverPeer(ctx context.Context, sourceDir, dir string) (string, error) {
	bin := filepath.Join(dir, "river-peer")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(sourceDir, riverDir)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", riverDir, err, buildError(string(out)))
	}
	return bin, nil
}

// buildError is the gist of go build's output: its last lines, without download progress.
func buildError(out string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "go: downloading ") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 3 {
		keep = keep[len(keep)-3:]
	}
	return strings.Join(keep, "; ")
}

// runRiver runs the River peer once on d (an empty database), with a pool of conns connections.
func runRiver(ctx context.Context, bin string, d *database, cfg Config, conns int) (riverResult, error) {
	var res riverResult
	args := []string{"-database-url", d.url, "-jobs", strconv.Itoa(cfg.RiverJobs), "-hops", strconv.Itoa(cfg.RiverHops),
		"-workers", strconv.Itoa(cfg.RiverWorkers), "-pool", strconv.Itoa(conns), "-timeout", cfg.Timeout.String()}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	setDeathSignal(cmd)
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("bench: river peer: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return res, fmt.Errorf("bench: river peer output %q: %w", stdout.String(), err)
	}
	if res.JobsPerSec <= 0 || res.HopP50Ms <= 0 {
		return res, fmt.Errorf("bench: river peer measured nothing: %s", stdout.String())
	}
	return res, nil
}

// peerRatios are the figures issue 16 sets goals on, each tasker-go's over River's.
type peerRatios struct {
	WorkerOverRiver float64 // worker-only steps/s ÷ River no-op jobs/s (goal ≥ 0.5)
	StageOverHop    float64 // linear per-stage ms (serial p50 ÷ 4) ÷ River hop p50 ms (goal ≤ 2)
}

// riverRatios computes the ratios from what was measured; a figure that is missing (zero) leaves
// its ratio NaN, which the recorder drops.
func riverRatios(workerStepsPerSec, riverJobsPerSec, linearSerialP50Ms, riverHopMs float64) peerRatios {
	div := func(a, b float64) float64 {
		if a <= 0 || b <= 0 {
			return math.NaN()
		}
		return a / b
	}
	return peerRatios{WorkerOverRiver: div(workerStepsPerSec, riverJobsPerSec), StageOverHop: div(linearSerialP50Ms/4, riverHopMs)}
}
