package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// child is a `tasker` subcommand running as a child process.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exit    chan struct{} // closed when the process has exited; err is set then
	err     error
}

// startChild runs bin with args and env added to this process's environment; its output goes
// to <logDir>/<name>.log.
func startChild(bin, name string, args, env []string, logDir string) (*child, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, exit: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.exit)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports an early exit, with the tail of the child's log.
func (c *child) exited() error {
	select {
	case <-c.exit:
		return fmt.Errorf("bench: %s exited early (%v); log %s:\n%s", c.name, c.err, c.logPath, tail(c.logPath, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to grace for a clean exit, then kills the child.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.exit:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exit:
		var ee *exec.ExitError
		if c.err != nil && !errors.As(c.err, &ee) {
			return c.err
		}
		return nil
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.exit
		return fmt.Errorf("bench: %s did not stop within %s; killed", c.name, grace)
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// buildTasker builds ./cmd/tasker from sourceDir into dir and returns the binary's path.
func buildTasker(ctx context.Context, sourceDir, dir string) (string, error) {
	bin := filepath.Join(dir, "tasker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tasker")
	cmd.Dir = sourceDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go build ./cmd/tasker: %w\n%s", err, out)
	}
	return bin, nil
}
