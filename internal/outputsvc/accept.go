package outputsvc

// Uploads to the embedded store: a PUT (or a frame of POST /v1/blobs) to
// a signed URL, checked against its grant and, when the uploader sent
// one, its CRC32C, before anything is stored.

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/blobstore"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/google/uuid"
)

// Upload errors of the embedded store.
var (
	errSignature  = core.Errorf(core.EFORBIDDEN, "upload URL signature does not match")
	errExpiredURL = core.Errorf(core.EFORBIDDEN, "upload URL expired")
)

// Upload is a PUT to a signed embedded-store URL.
type Upload struct {
	Token       string // the signed token of the URL
	ContentType string
	// ContentLength is the request's Content-Length, -1 when it sent none.
	ContentLength int64
	// CRC32C returns the wire.ChecksumHeader header or trailer ("" when
	// not sent): the base64 of the big-endian CRC32C of the body. It is
	// called once the body has been read (a trailer comes after it).
	CRC32C func() string
	Body   io.Reader
	// Framed is an upload in a POST /v1/blobs frame, which has no
	// headers of its own: its Content-Type is the one granted, and
	// ContentLength the frame's size.
	Framed bool
}

// Accept stores the body of a PUT to a signed embedded-store URL. The
// grant must be valid and unexpired, its lease still held, the
// Content-Type the one it was signed for, the body exactly its size, and
// its CRC32C, when sent, the one of the bytes received; otherwise nothing
// is stored. When it checked a CRC32C it returns the SHA-256 (hex) of the
// stored bytes, which the uploader reports in its manifest instead of
// hashing the file itself; "" when the uploader sent none (it hashed the
// file, and the completion compares).
func (s *Service) Accept(ctx context.Context, u Upload) (string, error) {
	if !s.cfg.Blob.Embedded() {
		return "", core.Errorf(core.ENOTFOUND, "this server's output store takes uploads directly")
	}
	g, err := s.cfg.Signer.Verify(u.Token, s.cfg.Clock.Now())
	switch {
	case errors.Is(err, outputs.ErrExpired):
		return "", errExpiredURL
	case err != nil:
		return "", errSignature
	case g.Method != http.MethodPut:
		return "", core.Errorf(core.EFORBIDDEN, "this URL does not allow uploads")
	}
	taskID, err1 := uuid.Parse(g.Task)
	tok, err2 := uuid.Parse(g.Lease)
	if err1 != nil || err2 != nil {
		return "", errSignature
	}
	name := g.Key[strings.LastIndexByte(g.Key, '/')+1:]
	if err := s.checkHeld(ctx, core.Lease{TaskID: taskID, Token: tok}, time.Unix(g.Expires, 0)); err != nil {
		return "", fmt.Errorf("upload output %q of task %s: %w", name, taskID, err)
	}
	if u.Framed {
		u.ContentType = g.ContentType
	}
	if u.ContentType != g.ContentType {
		return "", core.Invalid("Content-Type", "output %q: Content-Type %q is not the %q the upload URL was granted for", name, u.ContentType, g.ContentType)
	}
	if u.ContentLength >= 0 && u.ContentLength != g.Size {
		field := "Content-Length"
		if u.Framed {
			field = "size"
		}
		return "", core.Invalid(field, "output %q: %d bytes sent; the upload URL was granted for exactly %d", name, u.ContentLength, g.Size)
	}
	wr, err := s.cfg.Blob.Put(ctx, g.Key, u.ContentType, readerFunc(u.Body.Read), g.Size)
	if err != nil {
		return "", core.Invalid("body", "output %q: %s; the upload URL was granted for exactly %d bytes", name, err.Error(), g.Size)
	}
	var crc string
	if u.CRC32C != nil {
		crc = u.CRC32C()
	}
	if err := checkReceived(name, wr, g.Size, crc); err != nil {
		_ = s.cfg.Blob.Delete(context.WithoutCancel(ctx), g.Key)
		s.mu.Lock()
		delete(s.hashes, g.Key) // an earlier try's bytes are gone too
		s.mu.Unlock()
		return "", err
	}
	s.remember(g.Key, uploaded{size: wr.N, sum: wr.SHA256, ct: u.ContentType})
	if crc == "" {
		return "", nil
	}
	return wr.SHA256, nil
}

// checkReceived checks what Put wrote for a grant of size bytes against
// the CRC32C the uploader sent ("" for none).
func checkReceived(name string, wr blobstore.Written, size int64, crc string) error {
	if wr.N != size {
		return core.Invalid("body", "output %q: %d bytes received; the upload URL was granted for exactly %d", name, wr.N, size)
	}
	if crc == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(crc)
	if err != nil || len(b) != 4 {
		return core.Invalid(wire.ChecksumHeader, "output %q: %q is not a base64 CRC32C (4 bytes, big-endian); nothing was stored", name, crc)
	}
	if want := binary.BigEndian.Uint32(b); wr.CRC32C != want {
		return core.Invalid(wire.ChecksumHeader, "output %q: the %d bytes received have CRC32C %08x; the uploader sent %08x (corrupted in transit); nothing was stored", name, wr.N, wr.CRC32C, want)
	}
	return nil
}

// checkHeld is heldTask for an upload, cached until the URL expires: the
// uploads of one grant cost one task read, not one per file. The cache
// only saves reads: Complete checks the lease again, and what a lease
// uploaded after losing its task is never recorded.
func (s *Service) checkHeld(ctx context.Context, lease core.Lease, until time.Time) error {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	ok := s.held[lease.TaskID][lease.Token].After(now)
	s.mu.Unlock()
	if ok {
		return nil
	}
	if _, err := s.heldTask(ctx, uuid.Nil, lease); err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.held) >= maxHashCache {
		clear(s.held)
	}
	m := s.held[lease.TaskID]
	if m == nil {
		m = map[uuid.UUID]time.Time{}
		s.held[lease.TaskID] = m
	}
	m[lease.Token] = until
	s.mu.Unlock()
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
