package agent

import "syscall"

// handlerSysProcAttr puts the handler in its own process group (so that a
// timeout or cancel can signal everything it started) and has the kernel
// kill it if the agent dies.
func handlerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
