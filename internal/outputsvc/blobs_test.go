package outputsvc_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/core"
)

// frame is one frame of a POST /v1/blobs body (wire.BlobsContentType).
func frame(token string, body []byte, crc uint32) []byte {
	b := binary.AppendUvarint(nil, uint64(len(token)))
	b = append(b, token...)
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = binary.BigEndian.AppendUint32(b, crc)
	return append(b, body...)
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// TestBlobsBatch: several small uploads in one POST /v1/blobs are each
// checked and stored as their own PUT would be. A corrupted frame, a
// frame whose grant is not valid (tampered) and a frame shorter or
// longer than granted store nothing and are answered with their own
// error; the frames around them are stored and answered with their
// SHA-256, and the completion then succeeds with those.
func TestBlobsBatch(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "outputs"), nil)
	w := e.addWorker(t)
	task := e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	bodies := map[string][]byte{
		"a.txt": []byte("first file"), "b.txt": []byte("second file"), "c.txt": []byte("third file"),
		"d.txt": []byte("fourth file"), "e.txt": []byte("fifth file"), "f.txt": []byte("sixth"),
	}
	names := []string{"a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt"}
	var files []wire.UploadFile
	for _, n := range names {
		files = append(files, wire.UploadFile{Name: n, Size: int64(len(bodies[n])), ContentType: "text/plain"})
	}
	tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, files)
	if err != nil {
		t.Fatal(err)
	}
	tok := map[string]string{}
	for _, tg := range tgs {
		if !tg.Batch {
			t.Fatalf("%s: target does not offer batching: %+v", tg.Name, tg)
		}
		tok[tg.Name] = strings.TrimPrefix(tg.URL, "/v1/blobs/")
	}
	corrupted := bytes.Clone(bodies["b.txt"])
	corrupted[0] ^= 1
	tampered := []byte(tok["c.txt"])
	tampered[len(tampered)-2] ^= 1
	var body []byte
	body = append(body, frame(tok["a.txt"], bodies["a.txt"], crc32c(bodies["a.txt"]))...)
	body = append(body, frame(tok["b.txt"], corrupted, crc32c(bodies["b.txt"]))...)
	body = append(body, frame(string(tampered), bodies["c.txt"], crc32c(bodies["c.txt"]))...)
	body = append(body, frame(tok["d.txt"], bodies["d.txt"][:4], crc32c(bodies["d.txt"][:4]))...)
	long := append(bytes.Clone(bodies["e.txt"]), "and more"...)
	body = append(body, frame(tok["e.txt"], long, crc32c(long))...)
	body = append(body, frame(tok["f.txt"], bodies["f.txt"], crc32c(bodies["f.txt"]))...)
	res, err := w.c.PostBlobs(t.Context(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(names) {
		t.Fatalf("%d results for %d frames: %+v", len(res), len(names), res)
	}
	wantErr := map[string]struct {
		status int
		text   string
	}{
		"b.txt": {400, "corrupted in transit"},
		"c.txt": {403, "signature does not match"},
		"d.txt": {400, "4 bytes sent; the upload URL was granted for exactly 11"},
		"e.txt": {400, "18 bytes sent; the upload URL was granted for exactly 10"},
	}
	var manifest []wire.OutputEntry
	for i, n := range names {
		r := res[i]
		if want, bad := wantErr[n]; bad {
			if r.Error == nil || r.Status != want.status || !strings.Contains(r.Error.Message, want.text) || r.SHA256 != "" {
				t.Errorf("%s: %+v (error %+v), want %d %q", n, r, r.Error, want.status, want.text)
			}
			continue
		}
		sum := sha256.Sum256(bodies[n])
		if r.Error != nil || r.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: %+v (error %+v), want SHA-256 %x", n, r, r.Error, sum)
		}
		manifest = append(manifest, wire.OutputEntry{Name: n, Size: int64(len(bodies[n])), SHA256: r.SHA256, ContentType: "text/plain"})
	}
	// A refused frame stored nothing.
	refused := wire.OutputEntry{Name: "b.txt", Size: int64(len(bodies["b.txt"])), SHA256: hex.EncodeToString(bytes.Repeat([]byte{1}, 32)), ContentType: "text/plain"}
	if err := w.c.CompleteOutputs(t.Context(), w.id, lease, nil, append(manifest, refused)); client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "was not uploaded") {
		t.Fatalf("complete with a refused frame's file: %v, want 400 was not uploaded", err)
	}
	if err := w.c.CompleteOutputs(t.Context(), w.id, lease, nil, manifest); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, task.ID, core.TaskSucceeded)
}

// TestBlobsBatchBadBodies: a body that is not frames is refused naming
// what is wrong, after storing the frames before it; a request of another
// content type, or with more frames than the limit, is refused.
func TestBlobsBatchBadBodies(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "outputs"), nil)
	w := e.addWorker(t)
	e.submit(t, e.op, "render", `{}`, 1)
	lease := e.claim(t, w)
	body := []byte("0123456789")
	tgs, err := w.c.UploadURLs(t.Context(), w.id, lease, []wire.UploadFile{{Name: "a.txt", Size: int64(len(body)), ContentType: "text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	good := frame(strings.TrimPrefix(tgs[0].URL, "/v1/blobs/"), body, crc32c(body))
	many := bytes.Repeat(good, wire.MaxBlobFrames+1)
	for name, c := range map[string]struct {
		body []byte
		want string
	}{
		"token length zero":   {append(bytes.Clone(good), 0), "frame 1: the token length is not 1 to 4096 bytes"},
		"token length huge":   {binary.AppendUvarint(bytes.Clone(good), 1<<20), "frame 1: the token length"},
		"ends inside a token": {append(binary.AppendUvarint(bytes.Clone(good), 10), "abc"...), "frame 1: the body ends inside the token"},
		"frame too large":     {binary.AppendUvarint(append(binary.AppendUvarint(bytes.Clone(good), 1), 'x'), 2<<20), "frame 1: the size is not 0 to 1048576 bytes"},
		"too many frames":     {many, "more than 256 frames"},
	} {
		_, err := w.c.PostBlobs(t.Context(), bytes.NewReader(c.body))
		if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want 400 %q", name, err, c.want)
		}
	}
	// Not frames at all.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.hs.URL+"/v1/blobs", bytes.NewReader(good))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /v1/blobs as JSON: %d, want 400", resp.StatusCode)
	}
}
