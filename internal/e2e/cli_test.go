package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cliResult is what one `drover …` run printed and how it exited.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) all() string { return r.stdout + r.stderr }

// drover runs the drover binary in dir with env added to a clean
// environment (no DROVER_* from the test's own), stdin from in.
func drover(t *testing.T, dir string, env []string, in string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, droverBin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("drover %v: %v", args, err)
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DROVER_") {
			env = append(env, kv)
		}
	}
	return env
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// `drover config check` masks every credential form the PostgreSQL driver
// accepts, from the environment and from YAML, and prints the effective
// providers.local.dir.
func TestCLIConfigCheckMasksCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	urls := []string{
		"postgres://drover:s3cretA@db.internal/drover",
		"postgres://drover@db.internal/drover?password=s3cretB&sslmode=require",
		"postgres://drover@db.internal/drover?sslmode=verify-full&sslpassword=s3cretC",
	}
	for _, u := range urls {
		r := drover(t, dir, []string{"DROVER_DATABASE=" + u}, "", "config", "check")
		if r.code != 0 {
			t.Fatalf("config check with %s: exit %d\n%s", u, r.code, r.all())
		}
		if strings.Contains(r.all(), "s3cret") || !strings.Contains(r.stdout, "xxxxx") {
			t.Errorf("config check with DROVER_DATABASE does not mask the credential:\n%s", r.all())
		}
		if !strings.Contains(r.stdout, "/drover-agents-d") {
			t.Errorf("config check does not print the effective providers.local.dir:\n%s", r.stdout)
		}
		yml := filepath.Join(dir, "drover.yaml")
		if err := os.WriteFile(yml, []byte("database: \""+u+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r = drover(t, dir, nil, "", "config", "check", "--config", yml)
		if r.code != 0 || strings.Contains(r.all(), "s3cret") {
			t.Errorf("config check of YAML with %s: exit %d\n%s", u, r.code, r.all())
		}
	}
	r := drover(t, dir, []string{"DROVER_DATABASE=sqlite:///var/lib/drover/drover.db"}, "", "config", "check")
	if !strings.Contains(r.stdout, "dir: /var/lib/drover/drover-agents") {
		t.Errorf("config check does not print the effective providers.local.dir next to the SQLite file:\n%s", r.stdout)
	}
}

// `drover serve` with an unreachable database fails with the URL masked,
// and writes no operator.token.
func TestCLIServeUnreachableDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "postgres://drover:s3cretA@" + closedPort(t) + "/drover?sslpassword=s3cretB&password=s3cretC&connect_timeout=5"
	r := drover(t, dir, []string{"DROVER_DATABASE=" + db, "DROVER_LISTEN=" + closedPort(t)}, "", "serve")
	if r.code == 0 {
		t.Fatalf("serve with an unreachable database exited 0:\n%s", r.all())
	}
	if strings.Contains(r.all(), "s3cret") {
		t.Errorf("serve prints a database credential:\n%s", r.all())
	}
	if _, err := os.Stat(filepath.Join(dir, "operator.token")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve that could not start wrote operator.token (%v):\n%s", err, r.all())
	}
}

// `drover serve` prints a line when it shuts down on SIGTERM, saying what
// happens to its local agents.
func TestCLIServeSaysWhenItShutsDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, droverBin, "serve")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "DROVER_LISTEN="+closedPort(t), "DROVER_LOG_LEVEL=error")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(sc.Text(), "drover serving on") {
			break
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "operator.token")); err != nil {
		t.Errorf("a started serve wrote no operator.token: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	got := strings.Join(lines, "\n")
	if !strings.Contains(got, "drover serve shut down; no local agents are running") {
		t.Errorf("serve printed no shutdown line:\n%s", got)
	}
}
