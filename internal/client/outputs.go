package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/google/uuid"
)

// CompleteOutputs reports success of a held task with the manifest of its
// uploaded outputs; the server verifies every object before the task
// succeeds.
func (c *Client) CompleteOutputs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, result json.RawMessage, manifest []wire.OutputEntry) error {
	req := &wire.CompleteRequest{WorkerID: workerID, LeaseToken: lease.Token, Result: result, Outputs: manifest}
	return c.do(ctx, "complete task", http.MethodPost, taskPath(lease.TaskID, "complete"), nil, req, nil, 0)
}

// UploadURLs asks for one upload target per file of a held task.
func (c *Client) UploadURLs(ctx context.Context, workerID uuid.UUID, lease wire.Lease, files []wire.UploadFile) ([]wire.UploadTarget, error) {
	var out wire.UploadURLsResponse
	req := &wire.UploadURLsRequest{WorkerID: workerID, LeaseToken: lease.Token, Files: files}
	if err := c.do(ctx, "grant output uploads", http.MethodPost, taskPath(lease.TaskID, "outputs/uploads"), nil, req, &out, 0); err != nil {
		return nil, err
	}
	return out.Uploads, nil
}

// CompleteMultipart finishes a multipart upload with the parts' ETags.
func (c *Client) CompleteMultipart(ctx context.Context, workerID uuid.UUID, lease wire.Lease, name, uploadID string, etags []string) error {
	req := &wire.MultipartCompleteRequest{WorkerID: workerID, LeaseToken: lease.Token, Name: name, UploadID: uploadID, ETags: etags}
	return c.do(ctx, "finish multipart upload", http.MethodPost, taskPath(lease.TaskID, "outputs/multipart"), nil, req, nil, 0)
}

// ResolveURL returns an upload target's URL made absolute: a path is on
// this client's server.
func (c *Client) ResolveURL(u string) string {
	if strings.HasPrefix(u, "/") {
		return c.base + u
	}
	return u
}

// PutObject PUTs size bytes of body to a signed URL (no bearer token is
// sent: the URL carries its own authorisation) and returns the response's
// ETag. The body streams; nothing is buffered.
func (c *Client) PutObject(ctx context.Context, rawURL string, headers map[string]string, body io.Reader, size int64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.ResolveURL(rawURL), body)
	if err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	return c.put(req, headers)
}

// PutObjectTrailer is PutObject with one trailer after the body, whose
// value is asked for once the body has been read to its end (a checksum
// of the bytes sent). The body goes chunked: a trailer needs it, so no
// Content-Length is sent.
func (c *Client) PutObjectTrailer(ctx context.Context, rawURL string, headers map[string]string, body io.Reader, trailer string, value func() string) (string, error) {
	tb := &trailerBody{r: body, value: value, name: http.CanonicalHeaderKey(trailer)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.ResolveURL(rawURL), tb)
	if err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	req.ContentLength = -1
	req.Trailer = http.Header{tb.name: nil}
	tb.req = req
	return c.put(req, headers)
}

// PostBlobs sends several small uploads to the embedded store in one
// request: body is their frames (wire.BlobsContentType), each carrying
// its own signed grant, so no bearer token is sent. It returns one result
// per frame; an error means the request as a whole failed (nothing can
// be told of the frames).
func (c *Client) PostBlobs(ctx context.Context, body io.Reader) ([]wire.BlobResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/blobs", body)
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	req.Header.Set("Content-Type", wire.BlobsContentType)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	if resp.StatusCode >= 300 {
		return nil, uploadError(resp.StatusCode, b)
	}
	var out wire.BlobsResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("upload: decode the answer: %w", err)
	}
	return out.Results, nil
}

// trailerBody sets its request's trailer when its body ends: the
// transport writes the trailer after reading the body to EOF.
type trailerBody struct {
	r     io.Reader
	req   *http.Request
	name  string
	value func() string
}

func (t *trailerBody) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		t.req.Trailer.Set(t.name, t.value())
	}
	return n, err
}

func (c *Client) put(req *http.Request, headers map[string]string) (string, error) {
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return "", uploadError(resp.StatusCode, b)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("ETag"), nil
}

// uploadError is the error of an upload answered with status and body b
// (the server's error body, or a store's).
func uploadError(status int, b []byte) *Error {
	e := &Error{Status: status, Op: "upload", Code: codeForStatus(status), Message: strings.TrimSpace(string(b))}
	var eb wire.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
		e.Code, e.Message, e.Field = eb.Error.Code, eb.Error.Message, eb.Error.Field
	}
	return e
}

// Outputs returns the manifest of a task's recorded outputs.
func (c *Client) Outputs(ctx context.Context, id uuid.UUID) (*wire.OutputsResponse, error) {
	var out wire.OutputsResponse
	if err := c.do(ctx, "list outputs", http.MethodGet, taskPath(id, "outputs"), nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// DownloadOutput writes output name of task id into dir/name (following
// the server's redirect to a bucket when there is one) and returns the
// path. The file is written under a temporary name and renamed when
// complete.
func (c *Client) DownloadOutput(ctx context.Context, id uuid.UUID, name, dir string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("download output %q: not a plain file name", name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+taskPath(id, "outputs/"+url.PathEscape(name)), nil)
	if err != nil {
		return "", fmt.Errorf("download output %q: %w", name, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// Follow the redirect to a bucket by hand: the bearer token must not
	// travel to it (and a presigned URL refuses a second authorisation).
	noFollow := *c.hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Do(req)
	if err != nil {
		return "", fmt.Errorf("download output %q: %w", name, err)
	}
	defer resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		_, _ = io.Copy(io.Discard, resp.Body)
		req2, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
		if err != nil {
			return "", fmt.Errorf("download output %q: %w", name, err)
		}
		resp2, err := noFollow.Do(req2)
		if err != nil {
			return "", fmt.Errorf("download output %q: %w", name, err)
		}
		defer resp2.Body.Close()
		resp = resp2
	}
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &Error{Status: resp.StatusCode, Op: "download output " + name, Code: codeForStatus(resp.StatusCode), Message: strings.TrimSpace(string(b))}
		var eb wire.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			e.Code, e.Message = eb.Error.Code, eb.Error.Message
		}
		return "", e
	}
	f, err := os.CreateTemp(dir, ".drover-download-*")
	if err != nil {
		return "", fmt.Errorf("download output %q: %w", name, err)
	}
	tmp := f.Name()
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	dst := filepath.Join(dir, name)
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("download output %q: %w", name, err)
	}
	return dst, nil
}

// FieldOf returns the field an API error names ("" if none).
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
