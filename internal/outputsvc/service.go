// Package outputsvc is the server side of task outputs: it grants signed
// upload URLs bound to a held lease, accepts uploads into the embedded
// store, verifies a completion's manifest against the stored objects
// (size, SHA-256, content type, required outputs) before the task may
// succeed, serves outputs back, and deletes them when they expire.
//
// Verification is the point (predecessor incident I5: tasks marked
// complete whose files were missing): a task with outputs succeeds only
// through Complete, which records the outputs and the completion in one
// transaction, so a task never counts as succeeded with unverified files
// and at most one set of outputs is ever recorded per task.
package outputsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/blobstore"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// Defaults.
const (
	DefaultURLExpiry = 15 * time.Minute
	// DefaultPartSize: an agent sends a file's parts one after another,
	// so each part boundary is a pause (the store finishes one part
	// before the next starts); SeaweedFS took about 80 ms per part. At
	// 256 MiB a 1 GiB file pays four, and a part retried after a broken
	// connection resends at most 256 MiB. S3's 10,000 parts then allow
	// 2.5 TiB per file.
	DefaultPartSize  = 256 << 20
	DefaultRetention = 7 * 24 * time.Hour
)

// Completer completes a task and records its outputs atomically
// (queue.Service).
type Completer interface {
	CompleteWithOutputs(ctx context.Context, workerID uuid.UUID, lease core.Lease, result json.RawMessage, outs []*core.Output) error
}

// Config wires a Service.
type Config struct {
	Store     store.Store
	Blob      *blobstore.Store
	Signer    *outputs.Signer
	Clock     core.Clock
	Completer Completer
	Limits    outputs.Limits
	// URLExpiry bounds upload and download URLs (DefaultURLExpiry).
	URLExpiry time.Duration
	// PartSize is the part size of multipart uploads to S3; files larger
	// than it upload in parts (DefaultPartSize, at least 5 MiB).
	PartSize int64
	// Required maps a task type to its required outputs (config
	// tasks.types.T.outputs).
	Required map[string][]string
	// Retention returns how long the outputs of a task type are kept
	// after the task finishes (DefaultRetention when nil or ≤ 0).
	Retention func(taskType string) time.Duration
	Logger    *slog.Logger
}

// Service implements task outputs on the server.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	hashes map[string]uploaded // key → what the embedded store received
	// held caches Accept's lease check: task → lease token → until when
	// the check stands (the upload URL's expiry). A task's entry is
	// dropped when it completes here, so a stale attempt's later uploads
	// are checked against the database again.
	held map[uuid.UUID]map[uuid.UUID]time.Time
}

// uploaded is what this server knows about an object it received (the
// embedded store) or assembled (an S3 multipart upload).
type uploaded struct {
	size int64
	sum  string // SHA-256 of what the embedded store received
	ct   string // the Content-Type it was granted and sent with
	// parts is the ETag S3 gives an object assembled from the parts
	// whose ETags the multipart completion named (the MD5 of their MD5s
	// and "-N"); etag is the ETag the store reported for it right after.
	parts, etag string
	// bound: this server granted the object's upload through a URL that
	// binds the Content-Type ct (blobstore.BindsContentType).
	bound bool
}

const maxHashCache = 100_000

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Blob == nil || cfg.Completer == nil {
		return nil, errors.New("outputsvc: Store, Blob and Completer are required")
	}
	if cfg.Blob.Embedded() && cfg.Signer == nil {
		return nil, errors.New("outputsvc: the embedded store needs a Signer")
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.URLExpiry <= 0 {
		cfg.URLExpiry = DefaultURLExpiry
	}
	if cfg.PartSize <= 0 {
		cfg.PartSize = DefaultPartSize
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	return &Service{cfg: cfg, log: cfg.Logger, hashes: map[string]uploaded{}, held: map[uuid.UUID]map[uuid.UUID]time.Time{}}, nil
}

// Store returns the object store.
func (s *Service) Store() *blobstore.Store { return s.cfg.Blob }

// Limits returns the effective limits.
func (s *Service) Limits() outputs.Limits { return s.cfg.Limits }

// AnyTypeRequirements reports whether some task type requires outputs:
// only then must a completion without a manifest be checked by the
// server (a task's own params requirements are checked by its agent, and
// again here whenever a manifest is sent).
func (s *Service) AnyTypeRequirements() bool {
	for _, r := range s.cfg.Required {
		if len(r) > 0 {
			return true
		}
	}
	return false
}

// HasTypeRequirements reports whether tasks of taskType require outputs.
func (s *Service) HasTypeRequirements(taskType string) bool {
	return len(s.cfg.Required[taskType]) > 0
}

// heldTask returns the task when lease is held by workerID (any worker
// when workerID is uuid.Nil), else core.ErrLeaseLost.
func (s *Service) heldTask(ctx context.Context, workerID uuid.UUID, lease core.Lease) (*core.Task, error) {
	t, err := s.cfg.Store.TaskGet(ctx, lease.TaskID)
	if err != nil {
		if errors.Is(err, core.ErrNotFound) {
			return nil, core.ErrLeaseLost
		}
		return nil, fmt.Errorf("get task %s: %w", lease.TaskID, err)
	}
	if t.State != core.TaskRunning || t.LeaseToken == nil || *t.LeaseToken != lease.Token ||
		(workerID != uuid.Nil && (t.WorkerID == nil || *t.WorkerID != workerID)) {
		return nil, core.ErrLeaseLost
	}
	return t, nil
}

func invalid(format string, args ...any) error {
	return core.Invalid("outputs", format, args...)
}

func tooLarge(format string, args ...any) error {
	return &core.Error{Code: core.ETOOLARGE, Field: "outputs", Message: fmt.Sprintf(format, args...)}
}

// checkFiles validates an upload request against the limits.
func (s *Service) checkFiles(files []wire.UploadFile) error {
	l := s.cfg.Limits
	if len(files) == 0 {
		return invalid("no files")
	}
	if len(files) > l.MaxFiles {
		return tooLarge("%d files; the limit is %d files per task", len(files), l.MaxFiles)
	}
	seen := map[string]bool{}
	for _, f := range files {
		if err := outputs.ValidateName(f.Name); err != nil {
			return invalid("%s", err.Error())
		}
		if seen[f.Name] {
			return invalid("output %q: listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Size < 0 {
			return invalid("output %q: negative size", f.Name)
		}
		if f.Size > l.MaxFileSize {
			return tooLarge("output %q: %d bytes; the limit is %d bytes per file", f.Name, f.Size, l.MaxFileSize)
		}
		if err := outputs.ValidateContentType(f.Name, f.ContentType); err != nil {
			return invalid("%s", err.Error())
		}
	}
	return nil
}

// Grant returns one upload target per file, bound to the task, the lease,
// the name, the size and the content type, valid for URLExpiry.
func (s *Service) Grant(ctx context.Context, workerID uuid.UUID, lease core.Lease, files []wire.UploadFile) ([]wire.UploadTarget, error) {
	if err := s.checkFiles(files); err != nil {
		return nil, err
	}
	if _, err := s.heldTask(ctx, workerID, lease); err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	exp := now.Add(s.cfg.URLExpiry)
	out := make([]wire.UploadTarget, len(files))
	for i, f := range files {
		key := outputs.Key(lease.TaskID.String(), lease.Token.String(), f.Name)
		t := wire.UploadTarget{Name: f.Name, Method: http.MethodPut, ExpiresAt: exp.UTC().Truncate(time.Second)}
		switch {
		case s.cfg.Blob.Embedded():
			t.URL = "/v1/blobs/" + s.cfg.Signer.Sign(outputs.Grant{
				Method: http.MethodPut, Key: key, Task: lease.TaskID.String(), Lease: lease.Token.String(),
				Size: f.Size, ContentType: f.ContentType, Expires: exp.Unix(),
			})
			t.Headers = map[string]string{"Content-Type": f.ContentType}
			t.Checksum = wire.ChecksumCRC32C
			t.Batch = f.Size <= wire.MaxBlobFrameSize
		case s.cfg.Blob.Multipart() && f.Size > s.cfg.PartSize:
			mu, err := s.cfg.Blob.StartMultipart(ctx, key, f.ContentType, f.Size, s.cfg.PartSize, s.cfg.URLExpiry)
			if err != nil {
				return nil, fmt.Errorf("grant upload of output %q: %w", f.Name, err)
			}
			t.UploadID, t.PartSize, t.PartURLs, t.MD5 = mu.UploadID, s.cfg.PartSize, mu.PartURLs, true
		default:
			u, err := s.cfg.Blob.UploadURLFor(ctx, key, f.ContentType, s.cfg.URLExpiry)
			if err != nil {
				return nil, fmt.Errorf("grant upload of output %q: %w", f.Name, err)
			}
			if s.cfg.Blob.BindsContentType() && f.ContentType != "" {
				// The URL binds the type: the completion may take the
				// object's size and MD5 from a listing (verifyListed).
				s.remember(key, uploaded{ct: f.ContentType, bound: true})
			}
			// Without the header S3 stores binary/octet-stream, which
			// the completion's type check would refuse.
			t.URL = u
			t.Headers = map[string]string{"Content-Type": f.ContentType}
			t.MD5 = true
		}
		out[i] = t
	}
	return out, nil
}

// CompleteMultipart assembles a multipart upload granted for lease.
func (s *Service) CompleteMultipart(ctx context.Context, workerID uuid.UUID, lease core.Lease, name, uploadID string, etags []string) error {
	if err := outputs.ValidateName(name); err != nil {
		return invalid("%s", err.Error())
	}
	if uploadID == "" || len(etags) == 0 || len(etags) > 10000 {
		return invalid("output %q: upload_id and 1..10000 etags are required", name)
	}
	if _, err := s.heldTask(ctx, workerID, lease); err != nil {
		return err
	}
	key := outputs.Key(lease.TaskID.String(), lease.Token.String(), name)
	if err := s.cfg.Blob.CompleteMultipart(ctx, key, uploadID, etags); err != nil {
		// A retry of a call whose answer was lost finds the upload gone
		// and the object in place: done (the completion checks its size
		// and SHA-256 anyway).
		if _, serr := s.cfg.Blob.Stat(ctx, key); serr == nil {
			return nil
		}
		return invalid("output %q: %s", name, err.Error())
	}
	// The store accepted the parts only because their ETags, the MD5s it
	// computed of the bytes it received, are the ones named: remember
	// them, so that the completion trusts this object if the agent's own
	// part MD5s are the same, even from a store that reports another
	// ETag for the whole object.
	if parts, ok := multipartETag(etags); ok {
		if a, err := s.cfg.Blob.Stat(ctx, key); err == nil && a.ETag != "" {
			s.remember(key, uploaded{size: a.Size, parts: parts, etag: a.ETag})
		}
	}
	return nil
}

func (s *Service) remember(key string, up uploaded) {
	s.mu.Lock()
	if len(s.hashes) >= maxHashCache {
		clear(s.hashes)
	}
	s.hashes[key] = up
	s.mu.Unlock()
}

// required returns the outputs a task must produce: its type's and those
// its params list under outputs.ParamsKey.
func (s *Service) required(t *core.Task) []string {
	req := append([]string(nil), s.cfg.Required[t.Type]...)
	return append(req, outputs.ParamsRequired(t.Params)...)
}

func sameMediaType(a, b string) bool {
	ma, _, errA := mime.ParseMediaType(a)
	mb, _, errB := mime.ParseMediaType(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	return ma == mb
}

// Complete verifies the manifest of a held lease against the stored
// objects and the task's required outputs, then completes the task and
// records the outputs in one transaction. Any mismatch is an EINVALID
// error naming the file; nothing is recorded and the task stays running
// (the agent then fails the attempt, retryable).
func (s *Service) Complete(ctx context.Context, workerID uuid.UUID, lease core.Lease, result json.RawMessage, manifest []wire.OutputEntry) error {
	outs, err := s.Verify(ctx, workerID, lease, manifest)
	if err != nil {
		return err
	}
	return s.Record(ctx, workerID, lease, result, outs)
}

// Verify is the check of Complete without the completion: the manifest
// is valid and within the limits, the lease is held, every required
// output is listed, and every object matches its entry (size, SHA-256,
// content type). It returns the outputs to Record; it changes nothing.
func (s *Service) Verify(ctx context.Context, workerID uuid.UUID, lease core.Lease, manifest []wire.OutputEntry) ([]*core.Output, error) {
	entries := make([]outputs.Entry, len(manifest))
	for i, m := range manifest {
		entries[i] = outputs.Entry(m)
	}
	if len(entries) > s.cfg.Limits.MaxFiles {
		return nil, tooLarge("%d outputs; the limit is %d files per task", len(entries), s.cfg.Limits.MaxFiles)
	}
	if err := outputs.ValidateManifest(entries, s.cfg.Limits); err != nil {
		return nil, invalid("%s", err.Error())
	}
	t, err := s.heldTask(ctx, workerID, lease)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(entries))
	for _, e := range entries {
		have[e.Name] = true
	}
	for _, name := range s.required(t) {
		if !have[name] {
			return nil, invalid("required output %q of task type %q is missing: the handler did not write $DROVER_OUTPUT_DIR/%s", name, t.Type, name)
		}
	}
	now := s.cfg.Clock.Now()
	keep := DefaultRetention
	if s.cfg.Retention != nil {
		if d := s.cfg.Retention(t.Type); d > 0 {
			keep = d
		}
	}
	outs := make([]*core.Output, len(entries))
	for i, e := range entries {
		outs[i] = &core.Output{
			TaskID: lease.TaskID, Name: e.Name, Attempt: t.Attempt, Size: e.Size, SHA256: e.SHA256,
			ContentType: e.ContentType, BlobKey: outputs.Key(lease.TaskID.String(), lease.Token.String(), e.Name),
			CreatedAt: now, ExpiresAt: now.Add(keep),
		}
	}
	if err := s.verifyAll(ctx, outs, entries); err != nil {
		return nil, err
	}
	return outs, nil
}

// Record completes a held task with outputs that Verify returned, in one
// transaction (core.ErrLeaseLost when the lease went stale meanwhile:
// nothing is recorded), then deletes what other attempts of the task
// uploaded.
func (s *Service) Record(ctx context.Context, workerID uuid.UUID, lease core.Lease, result json.RawMessage, outs []*core.Output) error {
	if err := s.cfg.Completer.CompleteWithOutputs(ctx, workerID, lease, result, outs); err != nil {
		return err
	}
	s.forget(lease.TaskID, outs)
	s.dropOtherAttempts(context.WithoutCancel(ctx), lease)
	return nil
}

// NeedsCheck reports whether a completion of task must go through Verify
// although it carries no manifest: its type or its params require
// outputs.
func (s *Service) NeedsCheck(t *core.Task) bool {
	return s.HasTypeRequirements(t.Type) || len(outputs.ParamsRequired(t.Params)) > 0
}

func (s *Service) forget(task uuid.UUID, outs []*core.Output) {
	s.mu.Lock()
	delete(s.held, task)
	for _, o := range outs {
		delete(s.hashes, o.BlobKey)
	}
	s.mu.Unlock()
}

// dropOtherAttempts deletes what earlier attempts of the task uploaded
// (a worker killed mid-upload leaves objects under its own lease, and on
// S3 the parts of an unfinished multipart upload, which are aborted).
func (s *Service) dropOtherAttempts(ctx context.Context, lease core.Lease) {
	prefix := "tasks/" + lease.TaskID.String() + "/"
	keep := prefix + lease.Token.String() + "/"
	if err := s.cfg.Blob.DeleteExcept(ctx, prefix, keep); err != nil {
		s.log.WarnContext(ctx, "delete outputs of earlier attempts", "task", lease.TaskID, "err", err)
	}
	if err := s.cfg.Blob.AbortUploadsExcept(ctx, prefix, keep); err != nil {
		s.log.WarnContext(ctx, "abort unfinished uploads of earlier attempts", "task", lease.TaskID, "err", err)
	}
}

// List returns a task's recorded outputs.
func (s *Service) List(ctx context.Context, taskID uuid.UUID) ([]*core.Output, error) {
	return s.cfg.Store.OutputList(ctx, taskID)
}

// Find returns one recorded output (core.ErrNotFound if absent).
func (s *Service) Find(ctx context.Context, taskID uuid.UUID, name string) (*core.Output, error) {
	outs, err := s.List(ctx, taskID)
	if err != nil {
		return nil, err
	}
	for _, o := range outs {
		if o.Name == name {
			return o, nil
		}
	}
	return nil, core.Errorf(core.ENOTFOUND, "task %s has no output %q", taskID, name)
}

// DownloadURL returns a presigned download URL of an output in an external
// store ("" for the embedded store, whose bytes the server serves).
func (s *Service) DownloadURL(ctx context.Context, o *core.Output) (string, error) {
	if s.cfg.Blob.Embedded() {
		return "", nil
	}
	return s.cfg.Blob.DownloadURL(ctx, o.BlobKey, s.cfg.URLExpiry)
}

// Sweep deletes up to 1,000 expired outputs: the objects first, then
// their rows. It returns how many were deleted.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	outs, err := s.cfg.Store.OutputListExpired(ctx, s.cfg.Clock.Now(), 1000)
	if err != nil || len(outs) == 0 {
		return 0, err
	}
	done := outs[:0:0]
	for _, o := range outs {
		if err := s.cfg.Blob.Delete(ctx, o.BlobKey); err != nil {
			s.log.WarnContext(ctx, "delete expired output", "task", o.TaskID, "output", o.Name, "err", err)
			continue
		}
		done = append(done, o)
	}
	if err := s.cfg.Store.OutputDelete(ctx, done); err != nil {
		return 0, fmt.Errorf("delete expired outputs: %w", err)
	}
	return len(done), nil
}
