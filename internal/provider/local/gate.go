package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// GateEnv names the environment variable that tells a local agent which
// file descriptor carries its start gate.
//
// The provider starts an agent process before it can record it (the state
// file needs the process id). A server killed between the two would leave
// an agent that registers but that no provider lists: the next leader fails
// its worker as an interrupted spawn and starts another, one agent more
// than the pool's max. So the agent waits on a pipe until the provider has
// written its state file; if the provider dies first, the pipe closes
// without the go byte and the agent exits before it registers.
const GateEnv = "DROVER_LOCAL_GATE_FD"

// gateGo is the byte the provider writes once the agent is recorded.
const gateGo = 'g'

// ErrGateClosed is returned by AwaitGate when the process that started
// this agent exited before recording it.
var ErrGateClosed = errors.New("the server that started this local agent exited before recording it; exiting so that no unrecorded agent runs")

// AwaitGate blocks until the local provider that started this process has
// recorded it, and returns ErrGateClosed if that provider died first. A
// process not started by the local provider (no GateEnv) returns at once.
// The variable is removed from the environment, so handlers never see it.
func AwaitGate() error {
	v, ok := os.LookupEnv(GateEnv)
	if !ok {
		return nil
	}
	_ = os.Unsetenv(GateEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q: want a file descriptor number ≥ 3", GateEnv, v)
	}
	f := os.NewFile(uintptr(fd), "drover-local-gate")
	if f == nil {
		return fmt.Errorf("%s=%d: not an open file descriptor", GateEnv, fd)
	}
	defer f.Close()
	var b [1]byte
	if _, err := io.ReadFull(f, b[:]); err != nil || b[0] != gateGo {
		return ErrGateClosed
	}
	return nil
}
