package outputsvc_test

// The "Bad input" cases of task outputs: limits, names, lying content
// types and bad output directories, each a clear error naming the file
// and the limit, with nothing recorded.

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/droverhq/drover/internal/outputsvc"
	"github.com/google/uuid"
)

func TestUploadGrantLimitsAndNames(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "outputs"), func(c *outputsvc.Config) {
		c.Limits = outputs.Limits{MaxFileSize: 1000, MaxFiles: 2}
	})
	w := e.addWorker(t)
	e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	f := func(name string, size int64) wire.UploadFile {
		return wire.UploadFile{Name: name, Size: size, ContentType: "text/plain"}
	}
	cases := []struct {
		files  []wire.UploadFile
		status int
		want   string
	}{
		{[]wire.UploadFile{f("big.bin", 2000)}, 413, `output "big.bin": 2000 bytes; the limit is 1000 bytes per file`},
		{[]wire.UploadFile{f("a", 1), f("b", 1), f("c", 1)}, 413, "3 files; the limit is 2 files per task"},
		{[]wire.UploadFile{f("../x", 1)}, 400, "path separator"},
		{[]wire.UploadFile{f("/etc/passwd", 1)}, 400, "path separator"},
		{[]wire.UploadFile{f("dir/x", 1)}, 400, "path separator"},
		{[]wire.UploadFile{f("a\x00b", 1)}, 400, "NUL"},
		{[]wire.UploadFile{f("..", 1)}, 400, "not a file name"},
		{[]wire.UploadFile{{Name: "x", Size: 1, ContentType: "bogus"}}, 400, "type/subtype"},
	}
	for _, c := range cases {
		_, err := w.c.UploadURLs(t.Context(), w.id, lease, c.files)
		if client.StatusOf(err) != c.status || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %d with %q", c.files, err, c.status, c.want)
		}
	}
	// The same limits hold for the completion's manifest, and a rejected
	// completion records nothing.
	m := func(name string, size int64) wire.OutputEntry {
		return wire.OutputEntry{Name: name, Size: size, SHA256: sum([]byte(name)), ContentType: "text/plain"}
	}
	for _, c := range []struct {
		manifest []wire.OutputEntry
		status   int
		want     string
	}{
		{[]wire.OutputEntry{m("big.bin", 2000)}, 400, `output "big.bin": 2000 bytes; the limit is 1000 bytes per file`},
		{[]wire.OutputEntry{m("a", 1), m("b", 1), m("c", 1)}, 413, "3 outputs; the limit is 2 files per task"},
		{[]wire.OutputEntry{m("sub/x", 1)}, 400, `output "sub/x": name contains a path separator`},
	} {
		err := w.c.CompleteOutputs(t.Context(), w.id, lease, json.RawMessage(`{}`), c.manifest)
		if client.StatusOf(err) != c.status || !strings.Contains(err.Error(), c.want) {
			t.Errorf("manifest %+v: %v, want %d with %q", c.manifest, err, c.status, c.want)
		}
	}
	got, err := e.op.Task(t.Context(), lease.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := e.op.Outputs(t.Context(), lease.TaskID)
	if got.State != core.TaskRunning || len(res.Outputs) != 0 {
		t.Fatalf("task %s with %d outputs after rejected requests, want running with none", got.State, len(res.Outputs))
	}
}

// TestBadOutputDirFailsAttempt: a subdirectory or a symbolic link in
// $DROVER_OUTPUT_DIR fails the attempt with an error naming it; nothing
// is uploaded or recorded.
func TestBadOutputDirFailsAttempt(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "outputs"), nil)
	w := e.addWorker(t)
	dir := e.submit(t, e.op, "render", `{"bad":"dir"}`, 1)
	link := e.submit(t, e.op, "render", `{"bad":"link"}`, 1)
	e.startAgent(t, w, `p=$(cat)
printf ok > "$DROVER_OUTPUT_DIR/good.txt"
case "$p" in
*dir*) mkdir "$DROVER_OUTPUT_DIR/sub";;
*link*) ln -s /etc/passwd "$DROVER_OUTPUT_DIR/passwd";;
esac
echo '{}'`)
	for id, want := range map[uuid.UUID]string{dir.ID: `output "sub" is a directory`, link.ID: `output "passwd" is not a regular file`} {
		got := e.waitState(t, id, core.TaskFailed, core.TaskSucceeded)
		if got.State != core.TaskFailed || !strings.Contains(got.Error, want) {
			t.Errorf("task %s: %s %q, want failed with %q", id, got.State, got.Error, want)
		}
		if res, err := e.op.Outputs(t.Context(), id); err != nil || len(res.Outputs) != 0 {
			t.Errorf("outputs recorded for a failed attempt: %v %+v", err, res)
		}
	}
	if n := countObjects(t, e); n != 0 {
		t.Errorf("%d objects uploaded by failed attempts", n)
	}
}

func countObjects(t *testing.T, e *env) int {
	t.Helper()
	n := 0
	root := e.blob.String()
	_ = filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestLyingContentTypeHeader: an upload whose Content-Type header is not
// the granted one is refused by the embedded store; a bucket stores it,
// and the completion then fails naming the file and both types. Nothing
// is recorded either way.
func TestLyingContentTypeHeader(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mk(t), nil)
			w := e.addWorker(t)
			task := e.submit(t, e.op, "render", `{}`, 1)
			lease := e.claim(t, w)
			body := []byte("plain text, honestly")
			tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, []wire.UploadFile{{Name: "a.txt", Size: int64(len(body)), ContentType: "text/plain"}})
			if err != nil {
				t.Fatal(err)
			}
			err = put(t, w, tgs[0], "image/png", body)
			if name == "file" {
				if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), `output "a.txt": Content-Type "image/png"`) {
					t.Fatalf("lying header: %v, want 400 naming the file and the type", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				err = w.c.CompleteOutputs(t.Context(), w.id, lease, nil, []wire.OutputEntry{{Name: "a.txt", Size: int64(len(body)), SHA256: sum(body), ContentType: "text/plain"}})
				if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), `output "a.txt": stored as "image/png"; the manifest says "text/plain"`) {
					t.Fatalf("completion after a lying header: %v, want 400 naming the file and both types", err)
				}
			}
			got, err := e.op.Task(t.Context(), task.ID)
			if err != nil {
				t.Fatal(err)
			}
			if res, _ := e.op.Outputs(t.Context(), task.ID); got.State != core.TaskRunning || len(res.Outputs) != 0 {
				t.Fatalf("task %s with %d outputs, want running with none", got.State, len(res.Outputs))
			}
		})
	}
}
