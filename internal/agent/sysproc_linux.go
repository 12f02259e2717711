package agent

import "syscall"

// handlerSysProcAttr puts the handler in its own process group (so that a
// timeout or cancel can signal everything it started) and has the kernel
// send the handler wrapper SIGUSR2 if the agent dies, upon which the
// wrapper kills the whole group.
func handlerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGUSR2}
}
