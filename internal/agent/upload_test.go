package agent

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/google/uuid"
)

// flakyStore is an OutputAPI whose every URL fails its first PUT after
// reading part of the body (a broken connection), then stores the
// second.
type flakyStore struct {
	partSize int64
	mu       sync.Mutex
	tries    map[string]int
	objects  map[string][]byte
	etags    []string // the multipart completion's
}

func (s *flakyStore) UploadURLs(_ context.Context, _ uuid.UUID, _ wire.Lease, files []wire.UploadFile) ([]wire.UploadTarget, error) {
	out := make([]wire.UploadTarget, len(files))
	for i, f := range files {
		out[i] = wire.UploadTarget{Name: f.Name, URL: f.Name, MD5: true}
		if f.Size > s.partSize {
			out[i].URL, out[i].UploadID, out[i].PartSize = "", "up-"+f.Name, s.partSize
			for p := int64(0); p < f.Size; p += s.partSize {
				out[i].PartURLs = append(out[i].PartURLs, f.Name+"#"+string(rune('a'+p/s.partSize)))
			}
		}
	}
	return out, nil
}

func (s *flakyStore) PutObject(_ context.Context, url string, _ map[string]string, body io.Reader, size int64) (string, error) {
	s.mu.Lock()
	s.tries[url]++
	first := s.tries[url] == 1
	s.mu.Unlock()
	if first {
		_, _ = io.CopyN(io.Discard, body, size/2)
		return "", errors.New("connection reset by peer")
	}
	b, err := io.ReadAll(body)
	if err != nil || int64(len(b)) != size {
		return "", errors.New("short body")
	}
	s.mu.Lock()
	s.objects[url] = b
	s.mu.Unlock()
	m := md5.Sum(b)
	return `"` + hex.EncodeToString(m[:]) + `"`, nil
}

func (s *flakyStore) CompleteMultipart(_ context.Context, _ uuid.UUID, _ wire.Lease, _, _ string, etags []string) error {
	s.etags = etags
	return nil
}

func (s *flakyStore) CompleteOutputs(context.Context, uuid.UUID, wire.Lease, []byte, []wire.OutputEntry) error {
	return nil
}

func hexOf(sum []byte) string { return hex.EncodeToString(sum) }

// TestUploaderRetriesAndHashes: a small file (sent from a buffer), a
// larger one (streamed) and one in parts (sent in order, hashed by a
// running hash across the parts) each survive a failed first try, arrive whole, and
// the manifest's SHA-256 and MD5s are those of the files.
func TestUploaderRetriesAndHashes(t *testing.T) {
	dir := t.TempDir()
	const partSize = 2 << 20
	sizes := map[string]int64{"small.bin": 100 << 10, "empty.bin": 0, "stream.bin": partSize, "parts.bin": 3*partSize + 12345}
	data := map[string][]byte{}
	for name, n := range sizes {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		data[name] = b
	}
	// stream.bin, over smallFileMax and one part long, is streamed in one PUT.
	st := &flakyStore{partSize: partSize, tries: map[string]int{}, objects: map[string][]byte{}}
	u := &Uploader{API: st, WorkerID: uuid.New(), Parallel: 3, Wait: func(context.Context, int) bool { return true }}
	manifest, err := u.Upload(t.Context(), wire.Lease{TaskID: uuid.New(), Token: uuid.New()}, dir, []string{"small.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest) != len(sizes) {
		t.Fatalf("manifest has %d entries, want %d", len(manifest), len(sizes))
	}
	for _, e := range manifest {
		b := data[e.Name]
		sum := sha256.Sum256(b)
		if e.Size != int64(len(b)) || e.SHA256 != hexOf(sum[:]) {
			t.Errorf("%s: size %d, SHA-256 %s; want %d, %x", e.Name, e.Size, e.SHA256, len(b), sum)
		}
		if e.Name != "parts.bin" {
			m := md5.Sum(b)
			if e.MD5 != hexOf(m[:]) || !bytes.Equal(st.objects[e.Name], b) {
				t.Errorf("%s: MD5 %s (want %x), stored %d bytes of %d", e.Name, e.MD5, m, len(st.objects[e.Name]), len(b))
			}
			continue
		}
		if len(e.PartMD5) != 4 || len(st.etags) != 4 {
			t.Fatalf("parts.bin: %d part MD5s, %d ETags; want 4", len(e.PartMD5), len(st.etags))
		}
		var whole []byte
		for i, pm := range e.PartMD5 {
			part := b[i*partSize : min((i+1)*partSize, len(b))]
			m := md5.Sum(part)
			url := "parts.bin#" + string(rune('a'+i))
			if pm != hexOf(m[:]) || st.etags[i] != `"`+pm+`"` || !bytes.Equal(st.objects[url], part) {
				t.Errorf("part %d: MD5 %s, ETag %s, %d bytes stored; want %x and the part's %d bytes", i+1, pm, st.etags[i], len(st.objects[url]), m, len(part))
			}
			whole = append(whole, st.objects[url]...)
		}
		if !bytes.Equal(whole, b) {
			t.Error("parts.bin: the stored parts are not the file")
		}
	}
}
