package loadbench

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill the child if this process dies
// first, so a crashed or interrupted benchmark leaves no server running.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
