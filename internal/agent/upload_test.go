package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
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
	data := writeRandomFiles(t, dir, sizes)
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

// crcStore is an embedded store as the agent sees it: its targets ask for
// a CRC32C, it checks the header (or, for a streamed body, the trailer)
// against the bytes it received, and it answers a checked upload with
// their SHA-256 as the ETag. The first PUT of every URL arrives with one
// byte flipped (corrupted in transit): it answers that with the server's
// error naming the header, and stores nothing. With dropTrailers it
// never sees a trailer (a proxy on the way drops them).
type crcStore struct {
	flakyStore
	dropTrailers bool
	crcs         map[string]string // the CRC32C the last PUT of a URL sent ("" for none)
	trailered    map[string]bool
}

func newCRCStore() *crcStore {
	return &crcStore{flakyStore: flakyStore{tries: map[string]int{}, objects: map[string][]byte{}}, crcs: map[string]string{}, trailered: map[string]bool{}}
}

func (s *crcStore) UploadURLs(_ context.Context, _ uuid.UUID, _ wire.Lease, files []wire.UploadFile) ([]wire.UploadTarget, error) {
	out := make([]wire.UploadTarget, len(files))
	for i, f := range files {
		out[i] = wire.UploadTarget{Name: f.Name, URL: f.Name, Headers: map[string]string{"Content-Type": f.ContentType}, Checksum: wire.ChecksumCRC32C}
	}
	return out, nil
}

func (s *crcStore) PutObject(_ context.Context, url string, h map[string]string, body io.Reader, size int64) (string, error) {
	return s.receive(url, body, size, func() string { return h[wire.ChecksumHeader] })
}

func (s *crcStore) PutObjectTrailer(_ context.Context, url string, _ map[string]string, body io.Reader, _ string, value func() string) (string, error) {
	s.mu.Lock()
	s.trailered[url] = true
	s.mu.Unlock()
	return s.receive(url, body, -1, func() string {
		if s.dropTrailers {
			return ""
		}
		return value()
	})
}

func (s *crcStore) receive(url string, body io.Reader, size int64, crc func() string) (string, error) {
	b, err := io.ReadAll(body)
	if err != nil || size >= 0 && int64(len(b)) != size {
		return "", errors.New("short body")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries[url]++
	if s.tries[url] == 1 && len(b) > 0 {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 1
	}
	got := crc()
	s.crcs[url] = got
	if got == "" {
		s.objects[url] = b
		return "", nil
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	if got != base64.StdEncoding.EncodeToString(c[:]) {
		return "", &client.Error{Status: 400, Code: "invalid", Field: wire.ChecksumHeader, Message: "corrupted in transit"}
	}
	s.objects[url] = b
	sum := sha256.Sum256(b)
	return `"` + hexOf(sum[:]) + `"`, nil
}

// TestUploaderCRC32CToEmbeddedStore: for a target that asks for a
// CRC32C, a small file is sent with it in a header and a streamed one in
// a trailer, and their manifest entries carry the SHA-256 the store
// answered with; a try corrupted on the way is refused and sent again.
// Where the trailer never arrives (dropped by a proxy), the store checks
// nothing and answers without a SHA-256: the agent hashes the file
// itself, and sends the later files without a trailer.
func TestUploaderCRC32CToEmbeddedStore(t *testing.T) {
	dir := t.TempDir()
	sizes := map[string]int64{"small.bin": 100 << 10, "empty.bin": 0, "stream1.bin": smallFileMax + 1, "stream2.bin": 2*smallFileMax + 5}
	data := writeRandomFiles(t, dir, sizes)
	for _, drop := range []bool{false, true} {
		st := newCRCStore()
		st.dropTrailers = drop
		// One file at a time: the second stream comes after the first.
		u := &Uploader{API: st, WorkerID: uuid.New(), Parallel: 1, Wait: func(context.Context, int) bool { return true }}
		for _, e := range uploadAndCheck(t, u, dir, data) {
			b := data[e.Name]
			if e.Name == "empty.bin" {
				continue
			}
			stream := e.Name != "small.bin"
			if st.trailered[e.Name] != (stream && (!drop || e.Name == "stream1.bin")) {
				t.Errorf("drop %v, %s: sent with a trailer: %v", drop, e.Name, st.trailered[e.Name])
			}
			if checked := !drop || !stream; checked {
				// The corrupted try was refused and the file sent again.
				if st.tries[e.Name] != 2 || !bytes.Equal(st.objects[e.Name], b) {
					t.Errorf("drop %v, %s: %d tries, stored %d bytes of %d; want 2 tries and the file", drop, e.Name, st.tries[e.Name], len(st.objects[e.Name]), len(b))
				}
			} else if st.tries[e.Name] != 1 || bytes.Equal(st.objects[e.Name], b) {
				// Nothing checked on the way: the corrupted bytes were
				// stored, and only the manifest's SHA-256 (the file's)
				// lets the completion refuse them.
				t.Errorf("drop %v, %s: %d tries; want the one corrupted try stored", drop, e.Name, st.tries[e.Name])
			}
		}
	}
}

// batchStore is crcStore that also takes batches (POST /v1/blobs): it
// parses the frames, refuses the frame of "bad.bin" as corrupted in
// transit, and answers the frame of "gone.bin" as a stale lease.
type batchStore struct {
	*crcStore
	batches [][]string // the files of each batch
}

func (s *batchStore) UploadURLs(ctx context.Context, w uuid.UUID, l wire.Lease, files []wire.UploadFile) ([]wire.UploadTarget, error) {
	out, _ := s.crcStore.UploadURLs(ctx, w, l, files)
	for i := range out {
		out[i].URL, out[i].Batch = "/v1/blobs/tok-"+out[i].Name, true
	}
	return out, nil
}

func (s *batchStore) PostBlobs(_ context.Context, body io.Reader) ([]wire.BlobResult, error) {
	br := bufio.NewReader(body)
	var res []wire.BlobResult
	var names []string
	for {
		n, err := binary.ReadUvarint(br)
		if err == io.EOF {
			break
		}
		tok := make([]byte, n)
		_, _ = io.ReadFull(br, tok)
		size, _ := binary.ReadUvarint(br)
		var crc [4]byte
		_, _ = io.ReadFull(br, crc[:])
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(string(tok), "tok-")
		names = append(names, name)
		switch {
		case name == "gone.bin":
			res = append(res, wire.BlobResult{Status: 409, Error: &wire.ErrorDetail{Code: "conflict", Message: "lease lost"}})
		case name == "bad.bin" || binary.BigEndian.Uint32(crc[:]) != crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)):
			res = append(res, wire.BlobResult{Status: 400, Error: &wire.ErrorDetail{Code: "invalid", Field: wire.ChecksumHeader, Message: "corrupted in transit"}})
		default:
			s.mu.Lock()
			s.objects["/v1/blobs/"+string(tok)] = b
			s.mu.Unlock()
			sum := sha256.Sum256(b)
			res = append(res, wire.BlobResult{SHA256: hexOf(sum[:])})
		}
	}
	s.mu.Lock()
	s.batches = append(s.batches, names)
	s.mu.Unlock()
	return res, nil
}

// TestUploaderBatchesSmallFiles: small files to a store that offers
// batches go several to a request, within the batch limits, and their
// manifest entries carry the SHA-256 the store answered; a larger file
// goes on its own; a frame refused as corrupted is sent again on its own
// PUT; a frame refused as a stale lease fails the upload as one.
func TestUploaderBatchesSmallFiles(t *testing.T) {
	dir := t.TempDir()
	data := map[string][]byte{}
	write := func(name string, n int) {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		data[name] = b
	}
	for i := range 2*batchFiles + 3 {
		write(fmt.Sprintf("t%03d.bin", i), 1000+i)
	}
	write("bad.bin", 500)
	write("big.bin", smallFileMax+1)
	st := &batchStore{crcStore: newCRCStore()}
	u := &Uploader{API: st, WorkerID: uuid.New(), Parallel: 4, Wait: func(context.Context, int) bool { return true }}
	uploadAndCheck(t, u, dir, data)
	framed := 0
	for _, b := range st.batches {
		if len(b) > batchFiles {
			t.Errorf("a batch of %d files; the limit is %d", len(b), batchFiles)
		}
		framed += len(b)
		for _, n := range b {
			if n == "big.bin" {
				t.Error("big.bin went in a batch")
			}
		}
	}
	if framed != 2*batchFiles+4 || len(st.batches) < 3 {
		t.Errorf("%d files in %d batches, want %d in at least 3", framed, len(st.batches), 2*batchFiles+4)
	}
	if !st.trailered["/v1/blobs/tok-big.bin"] || st.crcs["/v1/blobs/tok-bad.bin"] == "" {
		t.Errorf("big.bin streamed with a trailer: %v; bad.bin resent on its own with its CRC32C: %q", st.trailered["/v1/blobs/tok-big.bin"], st.crcs["/v1/blobs/tok-bad.bin"])
	}

	write("gone.bin", 100)
	_, err := u.Upload(t.Context(), wire.Lease{TaskID: uuid.New(), Token: uuid.New()}, dir, nil)
	if !client.IsLeaseLost(err) {
		t.Fatalf("a frame answered as a stale lease: %v, want a lost lease", err)
	}
}

// uploadAndCheck uploads dir with u and checks that the manifest has an
// entry for every file of data with its SHA-256.
func uploadAndCheck(t *testing.T, u *Uploader, dir string, data map[string][]byte) []wire.OutputEntry {
	t.Helper()
	manifest, err := u.Upload(t.Context(), wire.Lease{TaskID: uuid.New(), Token: uuid.New()}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest) != len(data) {
		t.Fatalf("manifest has %d entries, want %d", len(manifest), len(data))
	}
	for _, e := range manifest {
		sum := sha256.Sum256(data[e.Name])
		if e.SHA256 != hexOf(sum[:]) {
			t.Errorf("%s: SHA-256 %s, want %x", e.Name, e.SHA256, sum)
		}
	}
	return manifest
}

// writeRandomFiles writes a file of random bytes of each size into dir
// and returns their contents by name.
func writeRandomFiles(t *testing.T, dir string, sizes map[string]int64) map[string][]byte {
	t.Helper()
	data := map[string][]byte{}
	for name, n := range sizes {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		data[name] = b
	}
	return data
}
