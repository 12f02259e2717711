package local

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// alive reports whether r's process runs and is the agent of r's worker.
func (p *Provider) alive(r *record) bool {
	if ch, ok := p.exited[r.ID]; ok {
		select {
		case <-ch:
			return false
		default:
			// Started by this provider and not yet reaped: its pid
			// cannot have been given to another process. (Its command
			// line can read empty for a moment after Start returns:
			// the kernel reports the exec done before it sets up the
			// new program's arguments.)
			return true
		}
	}
	if r.PID <= 0 {
		return false
	}
	if err := syscall.Kill(r.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// On Linux, make sure the pid was not reused by another program and is
	// not a zombie.
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(r.PID) + "/cmdline")
	if err != nil {
		return true // no /proc: the signal check is all there is
	}
	// An empty command line is a process between exec and its arguments,
	// or on its way out, or a kernel thread: the state tells which.
	if len(cmdline) > 0 && !slices.Contains(strings.Split(string(cmdline), "\x00"), r.WorkerID) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(r.PID) + "/stat")
	if err != nil {
		return len(cmdline) > 0
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return len(cmdline) > 0
	}
	// Fields after the name: state, ppid, pgrp, session, tty, tpgid, flags.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 7 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	const pfKthread = 0x00200000
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfKthread == 0
}
