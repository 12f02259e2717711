package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// PGBinDirs is where FindPGBin looks for initdb and pg_ctl (Debian's layout),
// newest version first.
var PGBinDirs = "/usr/lib/postgresql/*/bin"

// FindPGBin returns the directory holding initdb and pg_ctl: the newest
// under PGBinDirs, else the one pg_config reports, else the one on PATH.
func FindPGBin() (string, error) {
	dirs, _ := filepath.Glob(PGBinDirs)
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, pg_ctl) under " + PGBinDirs + ", from pg_config or on PATH")
}

func pgVersion(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// PrivatePG is a throwaway PostgreSQL cluster of its own (data directory and
// unix socket in a temporary directory, a loopback port, trust auth) that the
// harness may restart without disturbing anyone else's server. As root the
// server binaries run as the `postgres` OS user (initdb and pg_ctl refuse to
// run as root).
type PrivatePG struct {
	bin  string
	dir  string
	port int
	// asUser is the OS user the binaries run as ("" = this process's).
	asUser string
	uid    int
	gid    int
}

// StartPrivatePG initialises and starts a private cluster in a new
// temporary directory on a free loopback port.
func StartPrivatePG(ctx context.Context) (*PrivatePG, error) {
	bin, err := FindPGBin()
	if err != nil {
		return nil, err
	}
	pg := &PrivatePG{bin: bin, uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("private PostgreSQL: running as root needs the postgres OS user: %w", err)
		}
		pg.asUser = "postgres"
		pg.uid, _ = strconv.Atoi(u.Uid)
		pg.gid, _ = strconv.Atoi(u.Gid)
	}
	pg.dir, err = os.MkdirTemp("", "drover-chaos-pg-")
	if err != nil {
		return nil, fmt.Errorf("private PostgreSQL: temp dir: %w", err)
	}
	if pg.uid >= 0 {
		if err := os.Chown(pg.dir, pg.uid, pg.gid); err != nil {
			_ = os.RemoveAll(pg.dir)
			return nil, fmt.Errorf("private PostgreSQL: chown temp dir: %w", err)
		}
	}
	if pg.port, err = freePort(); err != nil {
		_ = os.RemoveAll(pg.dir)
		return nil, err
	}
	if out, err := pg.run(ctx, "initdb", "-D", pg.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		_ = os.RemoveAll(pg.dir)
		return nil, fmt.Errorf("private PostgreSQL: initdb: %w: %s", err, lastLine(out))
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300", pg.port, pg.dir)
	if out, err := pg.run(ctx, "pg_ctl", "-D", pg.data(), "-l", filepath.Join(pg.dir, "postgres.log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		_ = os.RemoveAll(pg.dir)
		return nil, fmt.Errorf("private PostgreSQL: start: %w: %s", err, lastLine(out))
	}
	return pg, nil
}

func (pg *PrivatePG) data() string { return filepath.Join(pg.dir, "data") }

// URL is the cluster's connection URL (database postgres, user postgres).
func (pg *PrivatePG) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// RestartCommand is a shell command that restarts the cluster (fast
// shutdown: sessions are ended, as in a real restart).
func (pg *PrivatePG) RestartCommand() string {
	c := fmt.Sprintf("%s -D %s -l %s -m fast -w -t 60 restart", filepath.Join(pg.bin, "pg_ctl"), pg.data(), filepath.Join(pg.dir, "postgres.log"))
	if pg.asUser != "" {
		c = "runuser -u " + pg.asUser + " -- " + c
	}
	return c
}

// Stop stops the cluster at once and removes its directory.
func (pg *PrivatePG) Stop(ctx context.Context) error {
	_, err := pg.run(ctx, "pg_ctl", "-D", pg.data(), "-m", "immediate", "-w", "stop")
	if rerr := os.RemoveAll(pg.dir); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("stop private PostgreSQL: %w", err)
	}
	return nil
}

func (pg *PrivatePG) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(pg.bin, name)
	var cmd *exec.Cmd
	if pg.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", pg.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = pg.dir
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
