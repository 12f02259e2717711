package outputsvc_test

// The "Bad input" cases of task outputs: limits, names, lying content
// types and bad output directories, each a clear error naming the file
// and the limit, with nothing recorded.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/crc32"
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

// TestEmbeddedUploadCRC32C: the embedded store's targets ask for a
// CRC32C; a body whose CRC32C is not the header's (corrupted in transit)
// and a header that is not a CRC32C are refused naming the header, and
// nothing is stored (the completion then finds no object); the right one,
// in a header or in a trailer after a streamed body, is stored and
// answered with the SHA-256 of the stored bytes.
func TestEmbeddedUploadCRC32C(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "outputs"), nil)
	w := e.addWorker(t)
	task := e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	body := []byte("the bytes the handler wrote")
	tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, []wire.UploadFile{{Name: "a.txt", Size: int64(len(body)), ContentType: "text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if tgs[0].Checksum != wire.ChecksumCRC32C {
		t.Fatalf("target asks for checksum %q, want %q", tgs[0].Checksum, wire.ChecksumCRC32C)
	}
	crcOf := func(b []byte) string {
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
		return base64.StdEncoding.EncodeToString(c[:])
	}
	send := func(crc string, b []byte) (string, error) {
		h := map[string]string{"Content-Type": "text/plain", wire.ChecksumHeader: crc}
		return w.c.PutObject(t.Context(), tgs[0].URL, h, bytes.NewReader(b), int64(len(b)))
	}
	corrupted := bytes.Clone(body)
	corrupted[3] ^= 0x20
	for crc, want := range map[string]string{
		crcOf(body):   "corrupted in transit", // the header is the file's; the bytes are not
		"not-base64!": "is not a base64 CRC32C",
		"AAAAAAAA":    "is not a base64 CRC32C", // six bytes
	} {
		_, err := send(crc, corrupted)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Field != wire.ChecksumHeader || !strings.Contains(ce.Message, want) || !strings.Contains(ce.Message, `"a.txt"`) {
			t.Errorf("CRC32C %q: %v, want 400 on %s naming a.txt and %q", crc, err, wire.ChecksumHeader, want)
		}
	}
	sum := sha256.Sum256(body)
	manifest := []wire.OutputEntry{{Name: "a.txt", Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]), ContentType: "text/plain"}}
	err = w.c.CompleteOutputs(t.Context(), w.id, lease, nil, manifest)
	if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "was not uploaded") {
		t.Fatalf("complete after refused uploads: %v, want 400: was not uploaded", err)
	}
	// A streamed body sends its CRC32C in a trailer, checked the same way.
	trailer := func(crc string, b []byte) (string, error) {
		return w.c.PutObjectTrailer(t.Context(), tgs[0].URL, map[string]string{"Content-Type": "text/plain"}, bytes.NewReader(b), wire.ChecksumHeader, func() string { return crc })
	}
	if _, err := trailer(crcOf(body), corrupted); client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "corrupted in transit") {
		t.Fatalf("corrupted body with a CRC32C trailer: %v, want 400 corrupted in transit", err)
	}
	// Without a CRC32C the store checks nothing and answers without a
	// SHA-256 (the uploader then hashes the file itself).
	if etag, err := w.c.PutObject(t.Context(), tgs[0].URL, map[string]string{"Content-Type": "text/plain"}, bytes.NewReader(body), int64(len(body))); err != nil || etag != "" {
		t.Fatalf("upload without a CRC32C: ETag %q, %v; want none", etag, err)
	}
	etag, err := trailer(crcOf(body), body)
	if err != nil {
		t.Fatal(err)
	}
	if etag != `"`+hex.EncodeToString(sum[:])+`"` {
		t.Fatalf("ETag %s, want the quoted SHA-256 %x", etag, sum)
	}
	if err := w.c.CompleteOutputs(t.Context(), w.id, lease, nil, manifest); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, task.ID, core.TaskSucceeded)
}
