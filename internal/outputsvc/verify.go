package outputsvc

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/droverhq/drover/internal/blobstore"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputs"
)

// verifyParallel is how many objects Complete checks at once (a bucket's
// round trips dominate; the embedded store answers from memory).
const verifyParallel = 16

// verifyAll checks every object against its entry, verifyParallel at a
// time, and returns the first mismatch in manifest order. Those that a
// listing vouches for (verifyListed) are not checked one by one.
func (s *Service) verifyAll(ctx context.Context, outs []*core.Output, entries []outputs.Entry) error {
	listed := s.verifyListed(ctx, outs, entries)
	errs := make([]error, len(entries))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, verifyParallel)
	for i := range entries {
		if listed != nil && listed[i] {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if errs[i] = s.verify(ctx, outs[i].BlobKey, entries[i]); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) {
			return err // a mismatch outranks the checks it cancelled
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// listMin is the fewest objects that verifyListed lists rather than
// leaving them to one Stat each.
const listMin = 4

// verifyListed checks, with one listing of the attempt's prefix (one
// request per 1,000 objects, where verify costs one HEAD per object),
// the objects this server granted through URLs that bind their
// Content-Type (blobstore.BindsContentType) and that the agent uploaded
// in one PUT and reported the MD5 of: such an object is as good as
// verified when the granted type is the manifest's and the listing has
// it with the manifest's size and, as its MD5 (the store's ETag, which
// the store computed from the bytes it received), the MD5 the agent
// computed in the same pass over the file as the SHA-256 in the
// manifest; the type need not be read back, because the store refused
// any PUT through that URL with another one. It returns which entries it
// vouched for (nil when it listed nothing); the others, and all of them
// when the listing fails, go through verify, which also names the
// mismatch.
func (s *Service) verifyListed(ctx context.Context, outs []*core.Output, entries []outputs.Entry) []bool {
	if !s.cfg.Blob.BindsContentType() || len(entries) < listMin {
		return nil
	}
	ok := make([]bool, len(entries))
	n := 0
	var prefix string
	s.mu.Lock()
	for i, e := range entries {
		key := outs[i].BlobKey
		p := key[:strings.LastIndexByte(key, '/')+1]
		if i == 0 {
			prefix = p
		}
		up, cached := s.hashes[key]
		if p == prefix && cached && up.bound && len(e.PartMD5) == 0 && e.MD5 != "" && sameMediaType(up.ct, e.ContentType) {
			ok[i] = true
			n++
		}
	}
	s.mu.Unlock()
	if n < listMin {
		return nil
	}
	objs, err := s.cfg.Blob.List(ctx, prefix)
	if err != nil {
		s.log.WarnContext(ctx, "list outputs to verify them; checking each", "prefix", prefix, "err", err)
		return nil
	}
	for i, e := range entries {
		if ok[i] {
			a, found := objs[outs[i].BlobKey]
			ok[i] = found && a.Size == e.Size && a.MD5 == e.MD5
		}
	}
	return ok
}

// verify checks one stored object against its manifest entry.
func (s *Service) verify(ctx context.Context, key string, e outputs.Entry) error {
	a, err := s.cfg.Blob.Stat(ctx, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		return invalid("output %q is in the manifest but was not uploaded", e.Name)
	}
	if err != nil {
		return fmt.Errorf("verify output %q: %w", e.Name, err)
	}
	if a.Size != e.Size {
		return invalid("output %q: the stored object has %d bytes; the manifest says %d", e.Name, a.Size, e.Size)
	}
	if a.ContentType != "" && !sameMediaType(a.ContentType, e.ContentType) {
		return invalid("output %q: stored as %q; the manifest says %q", e.Name, a.ContentType, e.ContentType)
	}
	s.mu.Lock()
	up, ok := s.hashes[key]
	s.mu.Unlock()
	if ok && up.ct != "" && !sameMediaType(up.ct, e.ContentType) {
		return invalid("output %q: stored as %q; the manifest says %q", e.Name, up.ct, e.ContentType)
	}
	sum := up.sum
	switch {
	case ok && sum != "" && up.size == a.Size:
		// The embedded store hashed the bytes as they arrived.
	case etagVouches(a, up, ok, e):
		// The store's MD5 of the bytes it holds is the agent's.
		return nil
	default:
		_, sum, err = s.cfg.Blob.Hash(ctx, key)
		if err != nil {
			return fmt.Errorf("verify output %q: %w", e.Name, err)
		}
	}
	if sum != e.SHA256 {
		return invalid("output %q: the stored object's SHA-256 is %s; the manifest says %s (corrupted upload)", e.Name, sum, e.SHA256)
	}
	return nil
}

// etagVouches reports whether the store's ETag of an object shows that
// it holds the bytes the agent hashed: the ETag (or the MD5 a GCS or
// Azure store keeps) is the MD5 the agent reported for a single PUT, or,
// for a multipart upload, the MD5 of the
// part MD5s it reported (computed here, or remembered from this server's
// completion of that upload when the store reports another ETag for the
// whole object). The store computed its MD5s from the bytes it received;
// the agent computed its MD5s and the SHA-256 in one pass over the file,
// so the SHA-256 in the manifest is of the stored bytes. Any other ETag
// (a store that does not use MD5s, SSE-KMS or SSE-C encryption, an agent
// that sent no MD5) proves nothing, and the object is read back.
func etagVouches(a blobstore.Attrs, up uploaded, cached bool, e outputs.Entry) bool {
	if len(e.PartMD5) == 0 {
		return e.MD5 != "" && (a.ETag == e.MD5 || a.MD5 == e.MD5)
	}
	if a.ETag == "" {
		return false
	}
	want, ok := multipartETag(e.PartMD5)
	if !ok {
		return false
	}
	return a.ETag == want || (cached && up.parts == want && up.etag == a.ETag)
}

// multipartETag is the ETag S3 gives an object assembled from parts with
// these ETags (hex MD5s, quoted or not): the hex MD5 of their
// concatenated binary MD5s, then "-" and the number of parts.
func multipartETag(parts []string) (string, bool) {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p, `"`))
		if err != nil || len(b) != md5.Size {
			return "", false
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts)), true
}
