package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
)

// Small files to the embedded store go several to a request (POST
// /v1/blobs, wire.BlobsContentType) where the server offers it
// (UploadTarget.Batch): an HTTP request costs the agent and the server
// about as much CPU as receiving, checking and writing a 100 KiB file,
// so a thousand image tiles in thousands of requests spent a third of
// their upload on requests.

// blobPoster is an OutputAPI that can send several small uploads in one
// request (*client.Client can).
type blobPoster interface {
	PostBlobs(ctx context.Context, body io.Reader) ([]wire.BlobResult, error)
}

// A batch holds at most batchFiles files and batchBytes bytes.
const (
	batchFiles = 32
	batchBytes = 2 << 20
)

// uploadJob is one unit of Upload's work: a file, or a batch of small
// files.
type uploadJob struct {
	files   []*localOutput
	targets []wire.UploadTarget
}

// planUploads groups the files that may go in a batch (in order, up to
// the batch limits) and leaves the others on their own.
func planUploads(files []localOutput, targets []wire.UploadTarget, canBatch bool) []uploadJob {
	var jobs []uploadJob
	open := -1 // the batch being filled
	var openBytes int64
	for i := range files {
		f, tg := &files[i], targets[i]
		if !canBatch || !batchable(f, tg) {
			jobs = append(jobs, uploadJob{files: []*localOutput{f}, targets: []wire.UploadTarget{tg}})
			continue
		}
		if open < 0 || len(jobs[open].files) == batchFiles || openBytes+f.Size > batchBytes {
			jobs = append(jobs, uploadJob{})
			open, openBytes = len(jobs)-1, 0
		}
		jobs[open].files = append(jobs[open].files, f)
		jobs[open].targets = append(jobs[open].targets, tg)
		openBytes += f.Size
	}
	return jobs
}

// batchable reports whether a file may go in a batch: a small file whose
// target offers it and is a URL of the embedded store.
func batchable(f *localOutput, tg wire.UploadTarget) bool {
	return tg.Batch && tg.Checksum == wire.ChecksumCRC32C && f.Size <= smallFileMax &&
		f.Size <= wire.MaxBlobFrameSize && blobToken(tg.URL) != ""
}

// blobToken is the signed token of an embedded-store upload URL ("" for
// any other URL).
func blobToken(url string) string {
	tok, ok := strings.CutPrefix(url, "/v1/blobs/")
	if !ok || tok == "" || len(tok) > wire.MaxBlobToken || strings.ContainsAny(tok, "/?#") {
		return ""
	}
	return tok
}

// uploadBatch uploads a batch of small files in one request (retried
// whole when the request fails) and sets each file's SHA-256 from the
// server's answer. A file the server refused as corrupted in transit is
// sent again on its own; any other refusal fails the upload, as it would
// have failed the file's own PUT.
func (u *Uploader) uploadBatch(ctx context.Context, lease wire.Lease, bp blobPoster, job uploadJob, prog *uploadProgress) error {
	results, err := withRetry(ctx, u, fmt.Sprintf("upload %d files", len(job.files)), func(ctx context.Context) ([]wire.BlobResult, error) {
		body := &frameReader{files: job.files, targets: job.targets}
		res, err := bp.PostBlobs(ctx, body)
		if ferr := body.err(); ferr != nil {
			return nil, ferr // reading a file failed, not the request
		}
		if err == nil && len(res) != len(job.files) {
			err = fmt.Errorf("upload %d files: the server answered %d", len(job.files), len(res))
		}
		return res, err
	})
	if err != nil {
		return wrapUpload(job.files[0].Name, err)
	}
	for i, r := range results {
		f := job.files[i]
		if r.Error == nil && r.SHA256 != "" {
			f.SHA256 = r.SHA256
			prog.add(f.Size)
			continue
		}
		ce := &client.Error{Status: r.Status, Op: "upload", Code: "internal", Message: "no SHA-256 in the answer"}
		if r.Error != nil {
			ce.Code, ce.Message, ce.Field = r.Error.Code, r.Error.Message, r.Error.Field
		}
		if ce.Field != wire.ChecksumHeader {
			return wrapUpload(f.Name, ce)
		}
		if err := u.uploadOne(ctx, lease, f, job.targets[i], prog); err != nil {
			return err
		}
	}
	return nil
}

// frameReader is the body of a batch: each file's frame in turn, read
// from disk into a pooled buffer when the one before has been sent.
// failed holds the error of a file that could not be read (the request
// then fails): the transport reads the body on its own goroutine, which
// may still be running when the request returns.
type frameReader struct {
	files   []*localOutput
	targets []wire.UploadTarget
	next    int
	head    []byte // the rest of the current frame's header
	data    []byte // the rest of the current file's bytes
	buf     *[]byte
	pool    *sync.Pool
	failed  atomic.Pointer[error]
}

func (r *frameReader) Read(p []byte) (int, error) {
	for len(r.head) == 0 && len(r.data) == 0 {
		r.release()
		if err := r.err(); err != nil {
			return 0, err
		}
		if r.next == len(r.files) {
			return 0, io.EOF
		}
		if err := r.load(r.files[r.next], r.targets[r.next]); err != nil {
			r.failed.Store(&err)
			return 0, err
		}
		r.next++
	}
	var n int
	if len(r.head) > 0 {
		n = copy(p, r.head)
		r.head = r.head[n:]
	}
	m := copy(p[n:], r.data)
	r.data = r.data[m:]
	return n + m, nil
}

// err is the error of a file that could not be read (nil if none).
func (r *frameReader) err() error {
	if e := r.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// load reads a file and makes its frame the current one.
func (r *frameReader) load(f *localOutput, tg wire.UploadTarget) error {
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("open output %q: %w", f.Name, err)
	}
	defer fh.Close()
	b, buf, pool, err := readSmall(fh, f)
	if err != nil {
		return err
	}
	tok := blobToken(tg.URL)
	h := make([]byte, 0, 2*binary.MaxVarintLen64+len(tok)+4)
	h = binary.AppendUvarint(h, uint64(len(tok)))
	h = append(h, tok...)
	h = binary.AppendUvarint(h, uint64(f.Size))
	h = binary.BigEndian.AppendUint32(h, crc32.Checksum(b, castagnoli))
	r.head, r.data, r.buf, r.pool = h, b, buf, pool
	return nil
}

// release returns the current file's buffer once its bytes have all been
// copied out.
func (r *frameReader) release() {
	if r.buf != nil {
		r.pool.Put(r.buf)
		r.buf, r.pool = nil, nil
	}
}
