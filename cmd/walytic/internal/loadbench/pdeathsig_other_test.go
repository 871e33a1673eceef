//go:build !linux

package loadbench

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
