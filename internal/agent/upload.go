package agent

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/google/uuid"
)

// DefaultUploadParallel is how many files an Uploader sends at once:
// enough to hide the per-request latency of many small files, few enough
// that one large file is not starved.
const DefaultUploadParallel = 16

// uploadTries bounds the attempts of one PUT (or one part).
const uploadTries = 6

// Uploader uploads the files of an output directory through the signed
// URLs the server grants, in one pass per file: each file is hashed
// (SHA-256, and MD5 per PUT when the target asks, so that a bucket's
// server can check the store's ETags instead of reading the objects
// back) from the same bytes it sends, so it is read once. A file of up to
// 1 MiB is read whole into a pooled buffer, hashed and sent from it; a
// larger one is hashed while it streams from disk to the store. Nothing
// is held in memory beyond one such buffer per file in flight.
type Uploader struct {
	API      OutputAPI
	WorkerID uuid.UUID
	// Parallel is how many files are in flight (DefaultUploadParallel
	// when ≤ 0).
	Parallel int
	// Wait sleeps before retry number try (0-based) and reports whether to
	// go on; nil waits 100 ms × 2^try with jitter.
	Wait func(ctx context.Context, try int) bool
	// Progress, when set, is called with the bytes sent so far and the
	// total (a retried transfer takes its bytes back).
	Progress func(done, total int64)
	Log      *slog.Logger

	// noTrailer is set once a CRC32C trailer did not reach the server:
	// the later files are hashed here.
	noTrailer atomic.Bool
}

// errAttempt is an output problem that fails the attempt (retryable).
type errAttempt struct{ msg string }

func (e *errAttempt) Error() string { return e.msg }

func attemptErr(format string, args ...any) error {
	return &errAttempt{msg: fmt.Sprintf(format, args...)}
}

// localOutput is one file of $DROVER_OUTPUT_DIR; its SHA-256 is filled
// in by the upload.
type localOutput struct {
	path string
	wire.OutputEntry
}

// scanOutputs lists, sizes and types the files of dir without reading
// them (a file whose extension names no type has its first 512 bytes
// sniffed). Hidden files (".x") are skipped; a directory, a link or a bad
// name fails the attempt.
func scanOutputs(dir string) ([]localOutput, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read output directory: %w", err)
	}
	var out []localOutput
	for _, e := range ents {
		name := e.Name()
		if len(name) > 0 && name[0] == '.' {
			continue
		}
		if err := outputs.ValidateName(name); err != nil {
			return nil, attemptErr("%v", err)
		}
		if e.IsDir() {
			return nil, attemptErr("output %q is a directory; outputs are plain files directly in $DROVER_OUTPUT_DIR", name)
		}
		if !e.Type().IsRegular() {
			return nil, attemptErr("output %q is not a regular file (links and devices are not uploaded)", name)
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("stat output %q: %w", name, err)
		}
		p := filepath.Join(dir, name)
		ct := mime.TypeByExtension(filepath.Ext(name))
		if ct == "" {
			if ct, err = sniffType(p); err != nil {
				return nil, fmt.Errorf("read output %q: %w", name, err)
			}
		}
		out = append(out, localOutput{path: p, OutputEntry: wire.OutputEntry{Name: name, Size: info.Size(), ContentType: ct}})
	}
	return out, nil
}

// sniffType types a file from its first 512 bytes.
func sniffType(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return http.DetectContentType(head[:n]), nil
}

// Upload uploads every file of dir for lease and returns the manifest
// (name, size, SHA-256 and content type of each file, in directory
// order). required names files that must exist. A lease lost on the way
// is returned as such (client.IsLeaseLost); any other problem fails the
// attempt.
func (u *Uploader) Upload(ctx context.Context, lease wire.Lease, dir string, required []string) ([]wire.OutputEntry, error) {
	files, err := scanOutputs(dir)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(files))
	for _, f := range files {
		have[f.Name] = true
	}
	for _, name := range required {
		if !have[name] {
			return nil, attemptErr("required output %q is missing: the handler did not write $DROVER_OUTPUT_DIR/%s", name, name)
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	if u.API == nil {
		return nil, attemptErr("this agent's server client cannot upload outputs")
	}
	req := make([]wire.UploadFile, len(files))
	var total int64
	for i, f := range files {
		req[i] = wire.UploadFile{Name: f.Name, Size: f.Size, ContentType: f.ContentType}
		total += f.Size
	}
	targets, err := withRetry(ctx, u, "grant uploads", func(ctx context.Context) ([]wire.UploadTarget, error) {
		return u.API.UploadURLs(ctx, u.WorkerID, lease, req)
	})
	if err != nil {
		return nil, err
	}
	if len(targets) != len(files) {
		return nil, fmt.Errorf("server granted %d uploads for %d files", len(targets), len(files))
	}
	prog := &uploadProgress{total: total, report: u.Progress}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	par := u.Parallel
	if par <= 0 {
		par = DefaultUploadParallel
	}
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, par)
		errOnce  sync.Once
		firstErr error
	)
	bp, canBatch := u.API.(blobPoster)
	for _, job := range planUploads(files, targets, canBatch) {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			if len(job.files) == 1 {
				err = u.uploadOne(ctx, lease, job.files[0], job.targets[0], prog)
			} else {
				err = u.uploadBatch(ctx, lease, bp, job, prog)
			}
			if err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	manifest := make([]wire.OutputEntry, len(files))
	for i, f := range files {
		manifest[i] = f.OutputEntry
	}
	return manifest, nil
}

// uploadOne uploads one file — in one PUT, or in parts, each retried on
// its own so a broken connection resends one part, not the file — and
// sets f.SHA256 (and the MD5s the target asks for) from the bytes sent.
func (u *Uploader) uploadOne(ctx context.Context, lease wire.Lease, f *localOutput, tg wire.UploadTarget, prog *uploadProgress) error {
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("open output %q: %w", f.Name, err)
	}
	defer fh.Close()
	switch {
	case len(tg.PartURLs) > 0:
		return u.uploadParts(ctx, lease, fh, f, tg, prog)
	case f.Size <= smallFileMax:
		return u.uploadSmall(ctx, fh, f, tg, prog)
	}
	return u.uploadStream(ctx, fh, f, tg, prog)
}

// uploadStream uploads a file in one PUT that hashes the bytes as the
// transport reads them from the file. Each try hashes afresh into its
// own reader: a failed try's body may still be read by the transport
// after it returns. Where the target takes a CRC32C it goes in a trailer
// (streamCRC32C) and the file is not hashed here with SHA-256.
func (u *Uploader) uploadStream(ctx context.Context, fh *os.File, f *localOutput, tg wire.UploadTarget, prog *uploadProgress) error {
	if tp, ok := u.API.(trailerPutter); ok && tg.Checksum == wire.ChecksumCRC32C && !u.noTrailer.Load() {
		sum, err := u.streamCRC32C(ctx, tp, fh, f, tg, prog)
		if err != nil || sum != "" {
			f.SHA256 = sum
			return err
		}
		// Stored, but no CRC32C was checked: the trailer did not reach
		// the server (a proxy on the way drops trailers). Hash the file
		// here instead, for this file and the rest (the completion
		// compares the SHA-256 with what the server received).
		u.noTrailer.Store(true)
		if u.Log != nil {
			u.Log.Warn("the server checked no CRC32C trailer (dropped on the way?); hashing outputs with SHA-256 here", "output", f.Name)
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(fh, 0, f.Size)); err != nil {
			return fmt.Errorf("hash output %q: %w", f.Name, err)
		}
		f.SHA256 = hex.EncodeToString(h.Sum(nil))
		return nil
	}
	var sent *hashingReader
	_, err := withRetry(ctx, u, "upload "+f.Name, func(ctx context.Context) (string, error) {
		body := &hashingReader{r: io.NewSectionReader(fh, 0, f.Size), h: sha256.New(), prog: prog}
		if tg.MD5 {
			body.m = md5.New()
		}
		etag, err := u.API.PutObject(ctx, tg.URL, tg.Headers, body, f.Size)
		if err != nil {
			prog.add(-body.n.Load()) // resent from the start
			return "", err
		}
		if got := body.n.Load(); got != f.Size {
			return "", attemptErr("output %q: %d bytes read of %d (the file changed while uploading)", f.Name, got, f.Size)
		}
		sent = body
		return etag, nil
	})
	if err != nil {
		return wrapUpload(f.Name, err)
	}
	f.SHA256 = hex.EncodeToString(sent.h.Sum(nil))
	if sent.m != nil {
		f.MD5 = hex.EncodeToString(sent.m.Sum(nil))
	}
	return nil
}

// trailerPutter is an OutputAPI that can send a trailer after a streamed
// body (*client.Client can).
type trailerPutter interface {
	PutObjectTrailer(ctx context.Context, url string, headers map[string]string, body io.Reader, trailer string, value func() string) (string, error)
}

// streamCRC32C streams a file in one PUT with its CRC32C, computed as the
// transport reads it, in a trailer, and returns the SHA-256 the server
// answered with ("" when it checked no CRC32C). A try that the server
// refuses as corrupted in transit is sent again.
func (u *Uploader) streamCRC32C(ctx context.Context, tp trailerPutter, fh *os.File, f *localOutput, tg wire.UploadTarget, prog *uploadProgress) (string, error) {
	sum, err := withRetry(ctx, u, "upload "+f.Name, func(ctx context.Context) (string, error) {
		crc := crc32.New(castagnoli)
		body := &hashingReader{r: io.NewSectionReader(fh, 0, f.Size), h: crc, prog: prog}
		etag, err := tp.PutObjectTrailer(ctx, tg.URL, tg.Headers, body, wire.ChecksumHeader, func() string { return crcValue(crc.Sum32()) })
		if err != nil {
			prog.add(-body.n.Load()) // resent from the start
			return "", resendCorrupted(f.Name, err)
		}
		if got := body.n.Load(); got != f.Size {
			return "", attemptErr("output %q: %d bytes read of %d (the file changed while uploading)", f.Name, got, f.Size)
		}
		return sha256ETag(etag), nil
	})
	if err != nil {
		return "", wrapUpload(f.Name, err)
	}
	return sum, nil
}

// resendCorrupted turns the server's refusal of a body whose CRC32C was
// not the one sent (it stored nothing) into an error that is retried.
func resendCorrupted(name string, err error) error {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Field == wire.ChecksumHeader {
		return fmt.Errorf("upload %s: %s", name, ce.Message)
	}
	return err
}

// smallFileMax is the largest file that uploadSmall sends: read whole
// into a pooled buffer, hashed, then written to the connection in one
// piece (one read and one send instead of a read, a hash and a socket
// write per 32 KiB), and sent again from the buffer if a try fails. At
// most Parallel such buffers are in use.
const smallFileMax = 1 << 20

// smallBufs pools uploadSmall's buffers by size class: 64 KiB, 128 KiB,
// ... smallFileMax.
var smallBufs [5]sync.Pool

func smallBuf(size int64) (*[]byte, *sync.Pool) {
	c := 0
	for int64(64<<10)<<c < size {
		c++
	}
	p := &smallBufs[c]
	if b, ok := p.Get().(*[]byte); ok {
		return b, p
	}
	b := make([]byte, 64<<10<<c)
	return &b, p
}

// uploadSmall uploads a file of at most smallFileMax bytes in one PUT,
// from one read of the file. The bytes checked are the bytes sent: where
// the target asks for a CRC32C (the embedded store), the server checks
// it and answers with the SHA-256 of what it stored, so the file is not
// hashed here with SHA-256 (a third of the CPU of a small file's upload
// on both ends); otherwise the SHA-256 (and the MD5 when the target asks)
// is computed here.
func (u *Uploader) uploadSmall(ctx context.Context, fh *os.File, f *localOutput, tg wire.UploadTarget, prog *uploadProgress) error {
	b, buf, pool, err := readSmall(fh, f)
	if err != nil {
		return err
	}
	headers := tg.Headers
	byServer := tg.Checksum == wire.ChecksumCRC32C
	if byServer {
		headers = withCRC32C(tg.Headers, crc32.Checksum(b, castagnoli))
	} else {
		sum := sha256.Sum256(b)
		f.SHA256 = hex.EncodeToString(sum[:])
		if tg.MD5 {
			m := md5.Sum(b)
			f.MD5 = hex.EncodeToString(m[:])
		}
	}
	failed := false
	etag, err := withRetry(ctx, u, "upload "+f.Name, func(ctx context.Context) (string, error) {
		etag, err := u.API.PutObject(ctx, tg.URL, headers, bytes.NewReader(b), f.Size)
		failed = failed || err != nil
		return etag, resendCorrupted(f.Name, err)
	})
	if err == nil && byServer {
		if f.SHA256 = sha256ETag(etag); f.SHA256 == "" {
			// Stored, but no CRC32C was checked (the header did not
			// reach the server): hash here; the completion compares.
			sum := sha256.Sum256(b)
			f.SHA256 = hex.EncodeToString(sum[:])
		}
	}
	// A failed try's body may still be read by the transport after it
	// returns: its buffer is left to the garbage collector.
	if !failed {
		pool.Put(buf)
	}
	if err != nil {
		return wrapUpload(f.Name, err)
	}
	prog.add(f.Size)
	return nil
}

// readSmall reads a file of at most smallFileMax bytes whole into a
// buffer of smallBufs, which the caller puts back into pool once sent.
func readSmall(fh *os.File, f *localOutput) ([]byte, *[]byte, *sync.Pool, error) {
	buf, pool := smallBuf(f.Size)
	b := (*buf)[:f.Size]
	if _, err := io.ReadFull(fh, b); err != nil {
		pool.Put(buf)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, nil, nil, attemptErr("output %q: fewer than %d bytes read (the file changed while uploading)", f.Name, f.Size)
		}
		return nil, nil, nil, fmt.Errorf("read output %q: %w", f.Name, err)
	}
	return b, buf, pool, nil
}

// castagnoli is the CRC32C table (wire.ChecksumCRC32C).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// withCRC32C returns a copy of h with the CRC32C header added (the
// target's headers are shared by every try and every file's goroutine).
func withCRC32C(h map[string]string, crc uint32) map[string]string {
	out := make(map[string]string, len(h)+1)
	maps.Copy(out, h)
	out[wire.ChecksumHeader] = crcValue(crc)
	return out
}

// crcValue is a CRC32C as wire.ChecksumHeader carries it.
func crcValue(crc uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc)
	return base64.StdEncoding.EncodeToString(b[:])
}

// sha256ETag returns the hex SHA-256 an embedded store's ETag carries
// ("" when it is not one).
func sha256ETag(etag string) string {
	v := strings.Trim(etag, `"`)
	if len(v) != 2*sha256.Size {
		return ""
	}
	if _, err := hex.DecodeString(v); err != nil {
		return ""
	}
	return strings.ToLower(v)
}

func wrapUpload(name string, err error) error {
	if err == nil || client.IsLeaseLost(err) {
		return err
	}
	var ae *errAttempt
	if errors.As(err, &ae) {
		return err
	}
	return attemptErr("upload of output %q failed: %v", name, err)
}

// withRetry runs fn until it succeeds, the error is final, or
// uploadTries attempts are spent.
func withRetry[T any](ctx context.Context, u *Uploader, what string, fn func(context.Context) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for i := 0; i < uploadTries; i++ {
		v, err = fn(ctx)
		if err == nil || client.IsLeaseLost(err) || ctx.Err() != nil {
			return v, err
		}
		var ae *errAttempt
		if errors.As(err, &ae) {
			return v, err
		}
		var ce *client.Error
		if errors.As(err, &ce) && !client.IsRetryable(err) {
			return v, err
		}
		if u.Log != nil {
			u.Log.Warn("output transfer failed; retrying", "op", what, "try", i+1, "err", err)
		}
		if !u.wait(ctx, i) {
			return v, ctx.Err()
		}
	}
	return v, err
}

func (u *Uploader) wait(ctx context.Context, try int) bool {
	if u.Wait != nil {
		return u.Wait(ctx, try)
	}
	d := 100 * time.Millisecond << min(try, 6)
	t := time.NewTimer(d/2 + time.Duration(rand.Int64N(int64(d/2)+1)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// hashingReader hashes and counts what it reads (the upload body). The
// transport may read it from its own goroutine, hence the atomic count.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	m    hash.Hash // MD5, when the target asks for it; else nil
	n    atomic.Int64
	prog *uploadProgress
}

func (c *hashingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.h.Write(p[:n])
		if c.m != nil {
			c.m.Write(p[:n])
		}
		c.n.Add(int64(n))
		c.prog.add(int64(n))
	}
	return n, err
}

// uploadProgress reports the bytes sent, at most every 1% of the total.
type uploadProgress struct {
	total  int64
	report func(done, total int64)
	done   atomic.Int64
	last   atomic.Int64
}

func (p *uploadProgress) add(n int64) {
	d := p.done.Add(n)
	if p.report == nil {
		return
	}
	step := max(p.total/100, 1)
	if d/step == p.last.Load() {
		return
	}
	p.last.Store(d / step)
	p.report(d, p.total)
}
