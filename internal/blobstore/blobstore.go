// Package blobstore is the object store behind task outputs, one interface
// over gocloud.dev/blob: the embedded default (a directory next to the
// database, whose uploads and downloads the server signs and serves
// itself) and s3://, gs:// and azblob:// buckets opened by the library's
// URL openers, to which agents upload directly through presigned URLs.
// Only the server opens a Store: workers never hold storage credentials.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"

	// The s3:// URL opener (gs:// and azblob:// are in opener_*.go,
	// behind build tags).
	_ "gocloud.dev/blob/s3blob"
)

// Store is one output bucket.
type Store struct {
	bucket   *blob.Bucket
	url      string
	embedded bool
	unnamed  bool     // the embedded store writes objects as unnamed files (unnamed.go)
	s3       *s3Parts // non-nil for s3:// buckets (multipart uploads)
}

// ErrNotFound is returned for an object that does not exist.
var ErrNotFound = errors.New("object not found")

// Open opens the bucket at rawURL. A plain path or a file:// URL is the
// embedded store (the directory is created); s3://, gs:// and azblob://
// use the library's URL openers and their usual credentials from the
// server's environment.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	if rawURL == "" {
		return nil, errors.New("blobstore: empty URL")
	}
	scheme, rest, hasScheme := strings.Cut(rawURL, "://")
	if !hasScheme || scheme == "file" {
		dir := rawURL
		if hasScheme {
			u, err := url.Parse(rawURL)
			if err != nil {
				return nil, fmt.Errorf("blobstore: parse %q: %w", rawURL, err)
			}
			dir = u.Path
		}
		_ = rest
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("blobstore: create directory %s: %w", dir, err)
		}
		// No attributes sidecar: it would cost a second file and an MD5
		// pass per object, and the content type of an output is bound
		// by its upload grant and recorded with the output.
		b, err := fileblob.OpenBucket(dir, &fileblob.Options{NoTempDir: true, Metadata: fileblob.MetadataDontWrite})
		if err != nil {
			return nil, fmt.Errorf("blobstore: open directory %s: %w", dir, err)
		}
		return &Store{bucket: b, url: dir, embedded: true, unnamed: unnamedOK(dir)}, nil
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("blobstore: open %s://…: %w", scheme, err)
	}
	s := &Store{bucket: b, url: scheme + "://" + bucketName(rest)}
	if scheme == "s3" {
		s.s3 = newS3Parts(b)
	}
	return s, nil
}

func bucketName(rest string) string {
	name, _, _ := strings.Cut(rest, "?")
	return name
}

// Embedded reports whether the server itself serves uploads and downloads.
func (s *Store) Embedded() bool { return s.embedded }

// String names the store without credentials or query parameters.
func (s *Store) String() string { return s.url }

// Close closes the bucket.
func (s *Store) Close() error { return s.bucket.Close() }

// UploadURL returns a presigned PUT URL for key (external stores only).
// The signature does not bind a content type (gocloud cannot presign one
// with the S3 SDK; UploadURLFor does): the uploader sends the granted
// Content-Type header, and the server compares the stored type with the
// manifest at completion.
func (s *Store) UploadURL(ctx context.Context, key string, expiry time.Duration) (string, error) {
	if s.embedded {
		return "", errors.New("blobstore: the embedded store has no presigned URLs")
	}
	u, err := s.bucket.SignedURL(ctx, key, &blob.SignedURLOptions{Method: http.MethodPut, Expiry: expiry})
	if err != nil {
		return "", fmt.Errorf("sign upload of %s: %w", key, err)
	}
	return u, nil
}

// DownloadURL returns a presigned GET URL for key (external stores only).
func (s *Store) DownloadURL(ctx context.Context, key string, expiry time.Duration) (string, error) {
	u, err := s.bucket.SignedURL(ctx, key, &blob.SignedURLOptions{Method: http.MethodGet, Expiry: expiry})
	if err != nil {
		return "", fmt.Errorf("sign download of %s: %w", key, err)
	}
	return u, nil
}

// Put streams r into key with the given content type and returns what it
// wrote. If r yields more than limit bytes the write is aborted. The
// object only appears once complete; it is not fsynced (see
// docs/outputs.md, "Durability").
func (s *Store) Put(ctx context.Context, key, contentType string, r io.Reader, limit int64) (Written, error) {
	if p, ok := s.localPath(key); ok {
		return putUnnamed(ctx, p, r, limit)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: contentType, BufferSize: 8 << 20})
	if err != nil {
		return Written{}, fmt.Errorf("open %s for writing: %w", key, err)
	}
	wr, err := copySummed(w, r, limit)
	if err != nil {
		cancel() // abort: the object is not created
		_ = w.Close()
		return wr, fmt.Errorf("write %s: %w", key, err)
	}
	if err := w.Close(); err != nil {
		return wr, fmt.Errorf("write %s: %w", key, err)
	}
	return wr, nil
}

// Attrs is what the store knows about an object.
type Attrs struct {
	Size        int64
	ContentType string
	// ETag is the store's entity tag without quotes: for S3 the hex MD5
	// of the object's bytes when it was uploaded in one PUT (without
	// SSE-KMS or SSE-C), "<hex MD5 of the parts' MD5s>-<parts>" for a
	// multipart upload; empty for the embedded store.
	ETag string
	// MD5 is the hex MD5 of the object's bytes where the store keeps one
	// (S3 derives it from a single PUT's ETag, GCS and Azure store it);
	// empty where it does not, and for the embedded store.
	MD5 string
}

// Stat returns the attributes of key (ErrNotFound if absent).
func (s *Store) Stat(ctx context.Context, key string) (Attrs, error) {
	if a, ok, err := s.statLocal(key); ok {
		return a, err
	}
	a, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return Attrs{}, ErrNotFound
		}
		return Attrs{}, fmt.Errorf("stat %s: %w", key, err)
	}
	at := Attrs{Size: a.Size, ContentType: a.ContentType, ETag: strings.Trim(a.ETag, `"`)}
	if len(a.MD5) == 16 {
		at.MD5 = hex.EncodeToString(a.MD5)
	}
	if s.embedded {
		// Not stored (no sidecar): the type is bound by the grant, and
		// the server hashed what it received.
		at.ContentType, at.ETag, at.MD5 = "", "", ""
	}
	return at, nil
}

// Hash reads key back and returns its size and SHA-256.
func (s *Store) Hash(ctx context.Context, key string) (int64, string, error) {
	r, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return 0, "", ErrNotFound
		}
		return 0, "", fmt.Errorf("read %s: %w", key, err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return n, "", fmt.Errorf("read %s: %w", key, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// Open opens key for reading (ErrNotFound if absent).
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, Attrs, error) {
	r, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, Attrs{}, ErrNotFound
		}
		return nil, Attrs{}, fmt.Errorf("read %s: %w", key, err)
	}
	return r, Attrs{Size: r.Size(), ContentType: r.ContentType()}, nil
}

// Delete deletes key; an absent object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// DeletePrefix deletes every object under prefix (the abandoned uploads of
// one attempt).
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if err := s.Delete(ctx, obj.Key); err != nil {
			return err
		}
	}
}

// DeleteExcept deletes every object under prefix that is not under keep.
// It lists one "/" level at a time and does not descend into keep: a
// completion's cleanup of the other attempts of a task costs one short
// listing, not a listing of the objects it just verified.
func (s *Store) DeleteExcept(ctx context.Context, prefix, keep string) error {
	if ok, err := s.deleteExceptLocal(prefix, keep); ok {
		return err
	}
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	var drop, dirs, into []string
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		switch {
		case strings.HasPrefix(obj.Key, keep):
		case obj.IsDir && strings.HasPrefix(keep, obj.Key):
			into = append(into, obj.Key) // keep is below it
		case obj.IsDir:
			dirs = append(dirs, obj.Key)
		default:
			drop = append(drop, obj.Key)
		}
	}
	for _, k := range drop {
		if err := s.Delete(ctx, k); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := s.DeletePrefix(ctx, d); err != nil {
			return err
		}
	}
	for _, d := range into {
		if err := s.DeleteExcept(ctx, d, keep); err != nil {
			return err
		}
	}
	return nil
}
