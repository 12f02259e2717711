package local

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// gatePipe sets GateEnv to a duplicate of a fresh pipe's read end (AwaitGate
// owns and closes the duplicate) and returns the write end.
func gatePipe(t *testing.T) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Setenv(GateEnv, strconv.Itoa(fd))
	return w
}

func TestAwaitGateOpensOnGoByte(t *testing.T) {
	w := gatePipe(t)
	if _, err := w.Write([]byte{gateGo}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := AwaitGate(); err != nil {
		t.Fatalf("AwaitGate = %v, want nil", err)
	}
	if _, ok := os.LookupEnv(GateEnv); ok {
		t.Errorf("%s still set: handlers would inherit it", GateEnv)
	}
}

// The provider died before it recorded the agent: its end of the pipe
// closed without the go byte, and the agent must not run.
func TestAwaitGateRefusesWhenTheSpawnerDied(t *testing.T) {
	w := gatePipe(t)
	w.Close()
	if err := AwaitGate(); !errors.Is(err, ErrGateClosed) {
		t.Fatalf("AwaitGate = %v, want ErrGateClosed", err)
	}
}

func TestAwaitGateWithoutGateReturnsAtOnce(t *testing.T) {
	t.Setenv(GateEnv, "")
	os.Unsetenv(GateEnv)
	if err := AwaitGate(); err != nil {
		t.Fatalf("AwaitGate = %v, want nil", err)
	}
}

func TestAwaitGateBadValueNamesTheVariable(t *testing.T) {
	t.Setenv(GateEnv, "x")
	err := AwaitGate()
	if err == nil || !strings.Contains(err.Error(), GateEnv) {
		t.Fatalf("AwaitGate = %v, want an error naming %s", err, GateEnv)
	}
}
