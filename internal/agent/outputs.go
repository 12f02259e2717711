package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/google/uuid"
)

// OutputAPI is the part of the server API that uploads task outputs;
// *client.Client implements it. An API without it cannot upload: a
// handler that writes outputs then fails its attempt.
type OutputAPI interface {
	UploadURLs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, files []wire.UploadFile) ([]wire.UploadTarget, error)
	CompleteMultipart(ctx context.Context, workerID uuid.UUID, lease wire.Lease, name, uploadID string, etags []string) error
	PutObject(ctx context.Context, url string, headers map[string]string, body io.Reader, size int64) (string, error)
	CompleteOutputs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result []byte, manifest []wire.OutputEntry) error
}

// clientOutputs adapts *client.Client (whose result is json.RawMessage).
type clientOutputs struct{ *client.Client }

func (c clientOutputs) CompleteOutputs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result []byte, manifest []wire.OutputEntry) error {
	return c.Client.CompleteOutputs(ctx, workerID, lease, result, manifest)
}

func (a *Agent) outputAPI() OutputAPI {
	api := a.api
	if w, ok := api.(watchedAPI); ok {
		api = w.API
	}
	switch x := api.(type) {
	case *client.Client:
		return clientOutputs{x}
	case OutputAPI:
		return x
	}
	return nil
}

// uploadParallel is how many files upload at once.
const uploadParallel = 4

// uploadTries bounds the attempts of one PUT (or one part).
const uploadTries = 6

// errAttempt is an output problem that fails the attempt (retryable).
type errAttempt struct{ msg string }

func (e *errAttempt) Error() string { return e.msg }

func attemptErr(format string, args ...any) error {
	return &errAttempt{msg: fmt.Sprintf(format, args...)}
}

// localOutput is one file of $DROVER_OUTPUT_DIR.
type localOutput struct {
	path string
	wire.OutputEntry
}

// scanOutputs lists, hashes and types the files of dir. Hidden files
// (".x") are skipped; a directory, a link or a bad name fails the attempt.
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
		p := filepath.Join(dir, name)
		size, sum, ct, err := hashFile(p)
		if err != nil {
			return nil, fmt.Errorf("hash output %q: %w", name, err)
		}
		out = append(out, localOutput{path: p, OutputEntry: wire.OutputEntry{Name: name, Size: size, SHA256: sum, ContentType: ct}})
	}
	return out, nil
}

// hashFile returns a file's size, SHA-256 and content type (by extension,
// else sniffed from its first 512 bytes).
func hashFile(path string) (int64, string, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", "", err
	}
	defer f.Close()
	h := sha256.New()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, "", "", err
	}
	head = head[:n]
	h.Write(head)
	rest, err := io.Copy(h, f)
	if err != nil {
		return 0, "", "", err
	}
	ct := mime.TypeByExtension(filepath.Ext(path))
	if ct == "" {
		ct = http.DetectContentType(head)
	}
	return int64(n) + rest, hex.EncodeToString(h.Sum(nil)), ct, nil
}

// uploadOutputs uploads every file of dir for the held lease and returns
// the manifest. A lease lost on the way is returned as such
// (client.IsLeaseLost); an *errAttempt fails the attempt.
func (a *Agent) uploadOutputs(ctx context.Context, t wire.ClaimedTask, rt *runningTask, dir string) ([]wire.OutputEntry, error) {
	files, err := scanOutputs(dir)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, f := range files {
		have[f.Name] = true
	}
	for _, name := range outputs.ParamsRequired(t.Params) {
		if !have[name] {
			return nil, attemptErr("required output %q is missing: the handler did not write $DROVER_OUTPUT_DIR/%s", name, name)
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	api := a.outputAPI()
	if api == nil {
		return nil, attemptErr("this agent's server client cannot upload outputs")
	}
	req := make([]wire.UploadFile, len(files))
	var total int64
	for i, f := range files {
		req[i] = wire.UploadFile{Name: f.Name, Size: f.Size, ContentType: f.ContentType}
		total += f.Size
	}
	targets, err := withRetry(ctx, a, "grant uploads", func(ctx context.Context) ([]wire.UploadTarget, error) {
		return api.UploadURLs(ctx, a.opt.WorkerID, rt.lease, req)
	})
	if err != nil {
		return nil, err
	}
	if len(targets) != len(files) {
		return nil, fmt.Errorf("server granted %d uploads for %d files", len(targets), len(files))
	}
	prog := &uploadProgress{a: a, task: t.ID, lease: rt.lease, total: total}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, uploadParallel)
		errOnce  sync.Once
		firstErr error
	)
	for i := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func(f localOutput, tg wire.UploadTarget) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := a.uploadOne(ctx, api, rt.lease, f, tg, prog); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		}(files[i], targets[i])
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

// uploadOne uploads one file: a single PUT, or its parts (each retried
// on its own, so a broken connection resends one part, not the file).
func (a *Agent) uploadOne(ctx context.Context, api OutputAPI, lease wire.Lease, f localOutput, tg wire.UploadTarget, prog *uploadProgress) error {
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("open output %q: %w", f.Name, err)
	}
	defer fh.Close()
	put := func(url string, off, n int64) (string, error) {
		return withRetry(ctx, a, "upload "+f.Name, func(ctx context.Context) (string, error) {
			body := &countingReader{r: io.NewSectionReader(fh, off, n), prog: prog}
			etag, err := api.PutObject(ctx, url, tg.Headers, body, n)
			if err != nil {
				prog.add(-body.n) // resent from the start of the part
			}
			return etag, err
		})
	}
	if len(tg.PartURLs) == 0 {
		_, err := put(tg.URL, 0, f.Size)
		return wrapUpload(f.Name, err)
	}
	etags := make([]string, len(tg.PartURLs))
	for i, u := range tg.PartURLs {
		off := int64(i) * tg.PartSize
		n := min(tg.PartSize, f.Size-off)
		etag, err := put(u, off, n)
		if err != nil {
			return wrapUpload(f.Name, err)
		}
		etags[i] = etag
	}
	_, err = withRetry(ctx, a, "finish upload "+f.Name, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, api.CompleteMultipart(ctx, a.opt.WorkerID, lease, f.Name, tg.UploadID, etags)
	})
	return wrapUpload(f.Name, err)
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
func withRetry[T any](ctx context.Context, a *Agent, what string, fn func(context.Context) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for i := 0; i < uploadTries; i++ {
		v, err = fn(ctx)
		if err == nil || client.IsLeaseLost(err) || ctx.Err() != nil {
			return v, err
		}
		var ce *client.Error
		if errors.As(err, &ce) && !client.IsRetryable(err) {
			return v, err
		}
		a.log.Warn("output transfer failed; retrying", "op", what, "try", i+1, "err", err)
		if !a.sleep(ctx, a.backoff(i)) {
			return v, ctx.Err()
		}
	}
	return v, err
}

// countingReader counts bytes read into the upload progress.
type countingReader struct {
	r    io.Reader
	n    int64
	prog *uploadProgress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.prog.add(int64(n))
	return n, err
}

// uploadProgress publishes "uploading outputs" in the task's progress
// message (shipped with the next heartbeat), at most every 1%.
type uploadProgress struct {
	a     *Agent
	task  uuid.UUID
	lease wire.Lease
	total int64
	done  atomic.Int64
	last  atomic.Int64
}

func (p *uploadProgress) add(n int64) {
	d := p.done.Add(n)
	step := max(p.total/100, 1)
	if d/step == p.last.Load() {
		return
	}
	p.last.Store(d / step)
	msg := fmt.Sprintf("uploading outputs: %d of %d MiB", d>>20, p.total>>20)
	p.a.mu.Lock()
	tp := p.a.progress[p.task]
	tp.TaskID, tp.LeaseToken, tp.Message = p.task, p.lease.Token, msg
	p.a.progress[p.task] = tp
	p.a.mu.Unlock()
}
