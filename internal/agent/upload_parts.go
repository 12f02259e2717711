package agent

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/droverhq/drover/internal/api/wire"
)

// uploadParts uploads a file in the parts its target names, in order,
// each retried on its own, then completes the multipart upload and sets
// f.SHA256 (and f.PartMD5 when the target asks for MD5s) from the bytes
// sent: the SHA-256 runs across the parts as they stream, and each try
// of a part hashes into its own copy of the state at the start of the
// part (a failed try's body may still be read by the transport after it
// returns, so it must not touch the hash that the next try continues).
func (u *Uploader) uploadParts(ctx context.Context, lease wire.Lease, fh *os.File, f *localOutput, tg wire.UploadTarget, prog *uploadProgress) error {
	h := sha256.New()
	etags := make([]string, len(tg.PartURLs))
	var parts []string
	if tg.MD5 {
		parts = make([]string, len(tg.PartURLs))
	}
	for i, url := range tg.PartURLs {
		off := int64(i) * tg.PartSize
		n := max(min(tg.PartSize, f.Size-off), 0)
		start, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return fmt.Errorf("hash output %q: %w", f.Name, err)
		}
		var m hash.Hash
		etags[i], err = withRetry(ctx, u, fmt.Sprintf("upload part %d of %s", i+1, f.Name), func(ctx context.Context) (string, error) {
			th := sha256.New()
			if err := th.(encoding.BinaryUnmarshaler).UnmarshalBinary(start); err != nil {
				return "", fmt.Errorf("hash output %q: %w", f.Name, err)
			}
			body := &hashingReader{r: io.NewSectionReader(fh, off, n), h: th, prog: prog}
			if tg.MD5 {
				body.m = md5.New()
			}
			etag, err := u.API.PutObject(ctx, url, tg.Headers, body, n)
			if err != nil {
				prog.add(-body.n.Load()) // resent from the start of the part
				return "", err
			}
			if got := body.n.Load(); got != n {
				return "", attemptErr("output %q: %d bytes read for a part of %d (the file changed while uploading)", f.Name, got, n)
			}
			h, m = th, body.m
			return etag, nil
		})
		if err != nil {
			return wrapUpload(f.Name, err)
		}
		if parts != nil {
			parts[i] = hex.EncodeToString(m.Sum(nil))
		}
	}
	_, err := withRetry(ctx, u, "finish upload "+f.Name, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, u.API.CompleteMultipart(ctx, u.WorkerID, lease, f.Name, tg.UploadID, etags)
	})
	if err != nil {
		return wrapUpload(f.Name, err)
	}
	f.SHA256, f.PartMD5 = hex.EncodeToString(h.Sum(nil)), parts
	return nil
}
