package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the child if tasker-bench dies without stopping it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
