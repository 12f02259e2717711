package api

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputsvc"
)

// handleBlobsPost accepts several small uploads to the embedded store in
// one request (wire.BlobsContentType): each frame is checked and stored
// as a PUT to its own signed URL would be, and answered on its own, so
// one bad frame (a stale lease, a corrupted body) stores nothing of its
// own and does not fail the others. A body that cannot be read as
// frames is refused from that frame on (400); the frames before it are
// stored and answered.
func (s *Server) handleBlobsPost(w http.ResponseWriter, r *http.Request) {
	if s.outputsOff(w, r) {
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != wire.BlobsContentType {
		s.writeError(w, r, core.Invalid("Content-Type", "want %s, got %q", wire.BlobsContentType, r.Header.Get("Content-Type")))
		return
	}
	br := bufio.NewReaderSize(r.Body, 64<<10)
	var results []wire.BlobResult
	for i := 0; ; i++ {
		f, err := readBlobFrame(br, i)
		if err == io.EOF {
			break
		}
		if err != nil {
			s.writeError(w, r, fmt.Errorf("frame %d of %d stored: %w", i, len(results), err))
			return
		}
		body := io.LimitReader(br, f.size)
		crc := base64.StdEncoding.EncodeToString(f.crc[:])
		sum, err := s.cfg.Outputs.Accept(r.Context(), outputsvc.Upload{
			Token: f.token, ContentLength: f.size, Framed: true,
			CRC32C: func() string { return crc }, Body: body,
		})
		// What Accept did not read (it refused the frame before its
		// bytes, or stopped at the grant's size) belongs to this frame.
		if _, derr := io.Copy(io.Discard, body); derr != nil {
			s.writeError(w, r, core.Invalid("body", "frame %d: %d bytes announced: %v", i, f.size, derr))
			return
		}
		if err != nil {
			status, detail := s.errorDetail(r, err, core.ErrorCode(err))
			results = append(results, wire.BlobResult{Status: status, Error: &detail})
			continue
		}
		results = append(results, wire.BlobResult{SHA256: sum})
	}
	writeJSON(w, http.StatusOK, wire.BlobsResponse{Results: results})
}

type blobFrame struct {
	token string
	size  int64
	crc   [4]byte
}

// readBlobFrame reads the header of frame i (io.EOF where the body ends
// between frames).
func readBlobFrame(br *bufio.Reader, i int) (blobFrame, error) {
	var f blobFrame
	n, err := binary.ReadUvarint(br)
	if err == io.EOF {
		return f, io.EOF
	}
	if i >= wire.MaxBlobFrames {
		return f, core.Invalid("body", "more than %d frames; the limit is %d per request", wire.MaxBlobFrames, wire.MaxBlobFrames)
	}
	if err != nil || n == 0 || n > wire.MaxBlobToken {
		return f, core.Invalid("body", "frame %d: the token length is not 1 to %d bytes", i, wire.MaxBlobToken)
	}
	tok := make([]byte, n)
	if _, err := io.ReadFull(br, tok); err != nil {
		return f, core.Invalid("body", "frame %d: the body ends inside the token", i)
	}
	size, err := binary.ReadUvarint(br)
	if err != nil || size > wire.MaxBlobFrameSize {
		return f, core.Invalid("body", "frame %d: the size is not 0 to %d bytes", i, wire.MaxBlobFrameSize)
	}
	if _, err := io.ReadFull(br, f.crc[:]); err != nil {
		return f, core.Invalid("body", "frame %d: the body ends inside the CRC32C", i)
	}
	f.token, f.size = string(tok), int64(size)
	return f, nil
}
