package outputsvc_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/droverhq/drover/internal/agent"
	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/blobstore"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// s3Requests counts what a loopback S3 (gofakes3) serves under tasks/:
// object HEADs and GETs, and listings of one attempt's objects
// (tasks/<task>/<lease>/; not those of the whole task, which the
// completion sends afterwards to drop other attempts' objects).
type s3Requests struct {
	heads, gets, lists atomic.Int64
	mu                 sync.Mutex
	prefixes           []string // of every listing: "prefix|delimiter"
}

func listingS3(t *testing.T) (string, *s3Requests) {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket("outputs"); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	n := &s3Requests{}
	fake := gofakes3.New(be).Server()
	fs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Query().Get("prefix"); r.Method == http.MethodGet && p != "" {
			n.mu.Lock()
			n.prefixes = append(n.prefixes, p+"|"+r.URL.Query().Get("delimiter"))
			n.mu.Unlock()
		}
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Query().Get("prefix"), "tasks/") && strings.Count(r.URL.Query().Get("prefix"), "/") == 3:
			n.lists.Add(1)
		case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/tasks/"):
			n.heads.Add(1)
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/tasks/"):
			n.gets.Add(1)
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(fs.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	return "s3://outputs?region=us-east-1&use_path_style=true&endpoint=" + fs.URL, n
}

// TestS3VerifiesManyFilesByListing: the agent uploads many small files
// to S3 through URLs that bind their Content-Type, and the completion
// checks them all with one listing (size and ETag = the agent's MD5),
// no HEAD per object, and nothing read back.
func TestS3VerifiesManyFilesByListing(t *testing.T) {
	storeURL, n := listingS3(t)
	e := newEnv(t, storeURL, nil)
	w := e.addWorker(t)
	task := e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	dir := t.TempDir()
	for i := range 12 {
		body := []byte(strings.Repeat(fmt.Sprintf("file %d\n", i), 100+i))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.txt", i)), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := &agent.Uploader{API: agent.NewClientOutputAPI(w.c), WorkerID: w.id}
	manifest, err := up.Upload(t.Context(), lease, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.heads.Store(0)
	if err := w.c.CompleteOutputs(t.Context(), w.id, lease, json.RawMessage(`{}`), manifest); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if h, g, l := n.heads.Load(), n.gets.Load(), n.lists.Load(); h != 0 || g != 0 || l != 1 {
		t.Fatalf("the completion sent %d HEADs, %d GETs and %d listings; want one listing only", h, g, l)
	}
	if got := e.waitState(t, task.ID, core.TaskSucceeded); got.State != core.TaskSucceeded {
		t.Fatalf("task %s", got.State)
	}
	res, err := e.op.Outputs(t.Context(), task.ID)
	if err != nil || len(res.Outputs) != 12 {
		t.Fatalf("outputs: %v, %+v", err, res)
	}
}

// TestS3ListingCatchesReplacedObject: an object replaced after the
// agent hashed it (same size, other bytes) has another ETag in the
// listing, so it is checked on its own, read back, and the completion is
// refused naming it; the others stay vouched for by the listing.
func TestS3ListingCatchesReplacedObject(t *testing.T) {
	storeURL, n := listingS3(t)
	e := newEnv(t, storeURL, nil)
	w := e.addWorker(t)
	task := e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	var files []wire.UploadFile
	bodies := map[string][]byte{}
	for i := range 6 {
		name := fmt.Sprintf("f%d.txt", i)
		bodies[name] = []byte(fmt.Sprintf("the bytes of file %d", i))
		files = append(files, wire.UploadFile{Name: name, Size: int64(len(bodies[name])), ContentType: "text/plain"})
	}
	tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, files)
	if err != nil {
		t.Fatal(err)
	}
	var manifest []wire.OutputEntry
	for _, tg := range tgs {
		u, err := url.Parse(tg.URL)
		if err != nil || !strings.Contains(u.Query().Get("X-Amz-SignedHeaders"), "content-type") {
			t.Fatalf("the upload URL does not sign the Content-Type: %s", tg.URL)
		}
		b := bodies[tg.Name]
		if err := put(t, w, tg, "", b); err != nil {
			t.Fatal(err)
		}
		manifest = append(manifest, wire.OutputEntry{Name: tg.Name, Size: int64(len(b)), SHA256: sum(b), MD5: md5hex(b), ContentType: "text/plain"})
	}
	if err := put(t, w, tgs[3], "", []byte("THE BYTES OF FILE 3")); err != nil {
		t.Fatal(err)
	}
	err = w.c.CompleteOutputs(t.Context(), w.id, lease, nil, manifest)
	if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), `output "f3.txt": the stored object's SHA-256 is `+sum([]byte("THE BYTES OF FILE 3"))) {
		t.Fatalf("replaced object: %v, want 400 naming f3.txt and its SHA-256", err)
	}
	if h, l := n.heads.Load(), n.lists.Load(); h != 1 || l != 1 {
		t.Fatalf("%d HEADs and %d listings; want one HEAD (f3.txt) and one listing", h, l)
	}
	// A manifest whose type is not the granted one is refused too.
	manifest[3] = wire.OutputEntry{Name: "f3.txt", Size: 19, SHA256: sum([]byte("THE BYTES OF FILE 3")), MD5: md5hex([]byte("THE BYTES OF FILE 3")), ContentType: "text/plain"}
	manifest[1].ContentType = "image/png"
	err = w.c.CompleteOutputs(t.Context(), w.id, lease, nil, manifest)
	if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), `output "f1.txt": stored as "text/plain"; the manifest says "image/png"`) {
		t.Fatalf("another type: %v, want 400 naming f1.txt", err)
	}
	manifest[1].ContentType = "text/plain"
	if err := w.c.CompleteOutputs(t.Context(), w.id, lease, nil, manifest); err != nil {
		t.Fatalf("complete with the replaced file's own hashes: %v", err)
	}
	e.waitState(t, task.ID, core.TaskSucceeded)
}

// TestS3DeleteExceptByLevels: on S3, DeleteExcept lists one "/" level at
// a time: it deletes the objects beside keep and every other prefix
// whole, descends only towards keep, and never lists keep's objects.
func TestS3DeleteExceptByLevels(t *testing.T) {
	storeURL, n := listingS3(t)
	st, err := blobstore.Open(t.Context(), storeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := []string{"tasks/T/a", "tasks/T/L1/b", "tasks/T/L2/c", "tasks/T/L2/d/e", "tasks/T/L2/d/f", "tasks/T/L3/x/y", "tasks/U/z"}
	for _, k := range keys {
		if _, err := st.Put(t.Context(), k, "text/plain", strings.NewReader(k), 100); err != nil {
			t.Fatal(err)
		}
	}
	n.prefixes = nil
	const keep = "tasks/T/L2/d/"
	if err := st.DeleteExcept(t.Context(), "tasks/T/", keep); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		_, err := st.Stat(t.Context(), k)
		kept := strings.HasPrefix(k, keep) || strings.HasPrefix(k, "tasks/U/")
		if kept != (err == nil) || (!kept && !errors.Is(err, blobstore.ErrNotFound)) {
			t.Errorf("%s: stat %v; want kept %v", k, err, kept)
		}
	}
	for _, pd := range n.prefixes {
		p, d, _ := strings.Cut(pd, "|")
		if strings.HasPrefix(keep, p) && d != "/" || strings.HasPrefix(p, keep) {
			t.Errorf("listed %q with delimiter %q: that lists keep's objects", p, d)
		}
	}
}
