package outputsvc_test

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/droverhq/drover/internal/agent"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// countingS3 is a loopback S3 (gofakes3) that counts the object reads
// (GETs) it serves.
func countingS3(t *testing.T) (storeURL string, gets *atomic.Int64) {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket("outputs"); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	gets = new(atomic.Int64)
	fake := gofakes3.New(be).Server()
	fs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/tasks/") {
			gets.Add(1)
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(fs.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	return "s3://outputs?region=us-east-1&use_path_style=true&endpoint=" + fs.URL, gets
}

func md5hex(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}

// TestS3VerifiesByETag: on S3 the agent reports the MD5 of each file (of
// each part of a multipart upload) from the pass that computes its
// SHA-256, and the server verifies the objects by their ETags without
// reading them back.
func TestS3VerifiesByETag(t *testing.T) {
	storeURL, gets := countingS3(t)
	e := newEnv(t, storeURL, nil) // 5 MiB parts
	w := e.addWorker(t)
	task := e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	dir := t.TempDir()
	small := []byte("hello outputs\n")
	big := make([]byte, 11<<20+123) // three parts
	for i := range big {
		big[i] = byte(i * 31 / 7)
	}
	for name, b := range map[string][]byte{"notes.txt": small, "big.bin": big} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := &agent.Uploader{API: agent.NewClientOutputAPI(w.c), WorkerID: w.id}
	manifest, err := up.Upload(t.Context(), lease, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]wire.OutputEntry{
		"notes.txt": {MD5: md5hex(small)},
		"big.bin":   {PartMD5: []string{md5hex(big[:5<<20]), md5hex(big[5<<20 : 10<<20]), md5hex(big[10<<20:])}},
	}
	for _, m := range manifest {
		wm := want[m.Name]
		if m.MD5 != wm.MD5 || strings.Join(m.PartMD5, ",") != strings.Join(wm.PartMD5, ",") {
			t.Errorf("%s: md5 %q, part_md5 %q; want %q, %q", m.Name, m.MD5, m.PartMD5, wm.MD5, wm.PartMD5)
		}
	}
	gets.Store(0)
	if err := w.c.CompleteOutputs(t.Context(), w.id, lease, json.RawMessage(`{}`), manifest); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if n := gets.Load(); n != 0 {
		t.Fatalf("the completion read %d objects back; want none (ETags match the agent's MD5s)", n)
	}
	if got := e.waitState(t, task.ID, core.TaskSucceeded); got.State != core.TaskSucceeded {
		t.Fatalf("task %s", got.State)
	}
}

// TestS3ETagMismatchReadsBack: an ETag that is not the MD5 the agent
// reported proves nothing either way (an encrypted bucket's ETag is not
// an MD5): the server reads the object back, rejects a corrupted upload
// naming the file, and accepts bytes whose SHA-256 is the manifest's.
func TestS3ETagMismatchReadsBack(t *testing.T) {
	storeURL, gets := countingS3(t)
	e := newEnv(t, storeURL, nil)
	w := e.addWorker(t)
	task := e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	body, other := []byte("the real bytes"), []byte("other bytes!!!")
	tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, []wire.UploadFile{{Name: "a.txt", Size: int64(len(body)), ContentType: "text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if !tgs[0].MD5 {
		t.Fatalf("an S3 upload target does not ask for the MD5: %+v", tgs[0])
	}
	if err := put(t, w, tgs[0], "", body); err != nil {
		t.Fatal(err)
	}
	corrupt := wire.OutputEntry{Name: "a.txt", Size: int64(len(body)), SHA256: sum(other), MD5: md5hex(other), ContentType: "text/plain"}
	err = w.c.CompleteOutputs(t.Context(), w.id, lease, nil, []wire.OutputEntry{corrupt})
	if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), `output "a.txt": the stored object's SHA-256 is `+sum(body)) {
		t.Fatalf("corrupted upload: %v, want 400 naming the file and both SHA-256s", err)
	}
	if res, _ := e.op.Outputs(t.Context(), task.ID); len(res.Outputs) != 0 {
		t.Fatalf("outputs recorded: %+v", res.Outputs)
	}
	gets.Store(0)
	honest := wire.OutputEntry{Name: "a.txt", Size: int64(len(body)), SHA256: sum(body), MD5: md5hex(other), ContentType: "text/plain"}
	if err := w.c.CompleteOutputs(t.Context(), w.id, lease, nil, []wire.OutputEntry{honest}); err != nil {
		t.Fatalf("complete with the true SHA-256 and another MD5: %v", err)
	}
	if gets.Load() == 0 {
		t.Fatal("an ETag that is not the reported MD5 was trusted without reading the object back")
	}
	e.waitState(t, task.ID, core.TaskSucceeded)
}
