package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/droverhq/drover/internal/outputsvc"
	"github.com/google/uuid"
)

// Routes of task outputs (docs/outputs.md). They answer 404 when the
// server has no output store.
func (s *Server) outputRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tasks/{id}/outputs/uploads", s.handleOutputUploads)
	mux.HandleFunc("POST /v1/tasks/{id}/outputs/multipart", s.handleOutputMultipart)
	mux.HandleFunc("PUT /v1/blobs/{token}", s.handleBlobPut)
	mux.HandleFunc("POST /v1/blobs", s.handleBlobsPost)
	mux.HandleFunc("GET /v1/tasks/{id}/outputs", s.handleOutputList)
	mux.HandleFunc("GET /v1/tasks/{id}/outputs/{name}", s.handleOutputGet)
}

func (s *Server) outputsOff(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Outputs == nil {
		s.writeError(w, r, core.Errorf(core.ENOTFOUND, "this server has no output store"))
		return true
	}
	return false
}

// DecodeUploadURLs decodes an upload grant request.
func DecodeUploadURLs(body []byte) (*wire.UploadURLsRequest, error) {
	var req wire.UploadURLsRequest
	if err := decodeJSONBytes(body, wire.MaxBody, &req, false); err != nil {
		return nil, err
	}
	if req.LeaseToken == uuid.Nil {
		return nil, core.Invalid("lease_token", "required")
	}
	return &req, nil
}

func (s *Server) handleOutputUploads(w http.ResponseWriter, r *http.Request) {
	if s.outputsOff(w, r) {
		return
	}
	taskID, req, lease, ok := leaseCall(s, w, r, wire.MaxBody, DecodeUploadURLs)
	if !ok {
		return
	}
	targets, err := s.cfg.Outputs.Grant(r.Context(), req.WorkerID, lease, req.Files)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("grant uploads for task %s: %w", taskID, err))
		return
	}
	writeJSON(w, http.StatusOK, wire.UploadURLsResponse{Uploads: targets})
}

// DecodeMultipartComplete decodes a multipart completion.
func DecodeMultipartComplete(body []byte) (*wire.MultipartCompleteRequest, error) {
	var req wire.MultipartCompleteRequest
	if err := decodeJSONBytes(body, wire.MaxBody, &req, false); err != nil {
		return nil, err
	}
	if req.LeaseToken == uuid.Nil {
		return nil, core.Invalid("lease_token", "required")
	}
	return &req, nil
}

func (s *Server) handleOutputMultipart(w http.ResponseWriter, r *http.Request) {
	if s.outputsOff(w, r) {
		return
	}
	taskID, req, lease, ok := leaseCall(s, w, r, wire.MaxBody, DecodeMultipartComplete)
	if !ok {
		return
	}
	if err := s.cfg.Outputs.CompleteMultipart(r.Context(), req.WorkerID, lease, req.Name, req.UploadID, req.ETags); err != nil {
		s.writeError(w, r, fmt.Errorf("finish upload of output %q of task %s: %w", req.Name, taskID, err))
		return
	}
	writeJSON(w, http.StatusOK, wire.OK{OK: true})
}

// handleBlobPut accepts an upload to the embedded store. The URL's
// signature is the authorisation (no bearer token).
func (s *Server) handleBlobPut(w http.ResponseWriter, r *http.Request) {
	if s.outputsOff(w, r) {
		return
	}
	cl := r.ContentLength
	if r.Header.Get("Content-Length") == "" {
		cl = -1
	}
	sum, err := s.cfg.Outputs.Accept(r.Context(), outputsvc.Upload{
		Token: r.PathValue("token"), ContentType: r.Header.Get("Content-Type"), ContentLength: cl,
		CRC32C: func() string {
			if v := r.Header.Get(wire.ChecksumHeader); v != "" {
				return v
			}
			return r.Trailer.Get(wire.ChecksumHeader) // read once the body is
		},
		Body: r.Body,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if sum != "" {
		// The CRC32C was checked: the SHA-256 of the stored bytes, which
		// the uploader reports in its manifest (wire.UploadTarget.Checksum).
		w.Header().Set("ETag", `"`+sum+`"`)
	}
	writeJSON(w, http.StatusOK, wire.OK{OK: true})
}

// completeWithOutputs routes a completion through output verification
// when it carries a manifest or its task type requires outputs. It
// reports whether it handled the request.
func (s *Server) completeWithOutputs(w http.ResponseWriter, r *http.Request, req *wire.CompleteRequest, lease core.Lease) bool {
	svc := s.cfg.Outputs
	if svc == nil {
		if len(req.Outputs) > 0 {
			s.writeError(w, r, core.Invalid("outputs", "this server has no output store"))
			return true
		}
		return false
	}
	if len(req.Outputs) == 0 {
		if !svc.AnyTypeRequirements() {
			return false // the hot path: no manifest, nothing required
		}
		t, err := s.queue.Get(r.Context(), lease.TaskID)
		if err != nil || (!svc.HasTypeRequirements(t.Type) && len(outputs.ParamsRequired(t.Params)) == 0) {
			return false
		}
	}
	if err := svc.Complete(r.Context(), req.WorkerID, lease, req.Result, req.Outputs); err != nil {
		s.writeError(w, r, fmt.Errorf("complete task %s: %w", lease.TaskID, err))
		return true
	}
	writeJSON(w, http.StatusOK, wire.OK{OK: true})
	return true
}

// verifiedItem is an item of a batched completion whose outputs Verify
// accepted.
type verifiedItem struct {
	lease  core.Lease
	result []byte
	outs   []*core.Output
}

// verifyBatchOutputs splits a batched completion: items that carry a
// manifest, or whose task requires outputs, are verified like a single
// completion (Outputs.Verify); the rest are returned as plain. A failed
// check rejects the whole request with the item's field and file named,
// so nothing is recorded; an item whose lease is stale is lost.
func (s *Server) verifyBatchOutputs(ctx context.Context, workerID uuid.UUID, items []wire.CompleteItem) ([]wire.CompleteItem, []verifiedItem, []core.Lease, error) {
	svc := s.cfg.Outputs
	var (
		plain    = make([]wire.CompleteItem, 0, len(items))
		verified []verifiedItem
		lost     []core.Lease
	)
	for i, it := range items {
		lease := core.Lease{TaskID: it.TaskID, Token: it.LeaseToken}
		field := fmt.Sprintf("items[%d].outputs", i)
		if svc == nil {
			if len(it.Outputs) > 0 {
				return nil, nil, nil, core.Invalid(field, "this server has no output store")
			}
			plain = append(plain, it)
			continue
		}
		if len(it.Outputs) == 0 {
			if !svc.AnyTypeRequirements() {
				plain = append(plain, it)
				continue
			}
			t, err := s.queue.Get(ctx, it.TaskID)
			if err != nil || !svc.NeedsCheck(t) {
				plain = append(plain, it) // an unknown task is lost in CompleteMany
				continue
			}
		}
		outs, err := svc.Verify(ctx, workerID, lease, it.Outputs)
		if errors.Is(err, core.ErrLeaseLost) {
			lost = append(lost, lease)
			continue
		}
		if err != nil {
			var ce *core.Error
			if errors.As(err, &ce) {
				return nil, nil, nil, &core.Error{Code: ce.Code, Field: field, Message: fmt.Sprintf("task %s: %s", it.TaskID, ce.Message)}
			}
			return nil, nil, nil, fmt.Errorf("verify outputs of task %s: %w", it.TaskID, err)
		}
		verified = append(verified, verifiedItem{lease: lease, result: it.Result, outs: outs})
	}
	return plain, verified, lost, nil
}

// recordBatchOutputs records the verified items, one transaction each
// (with their outputs); an item whose lease went stale is added to lost.
func (s *Server) recordBatchOutputs(ctx context.Context, workerID uuid.UUID, verified []verifiedItem, lost []core.Lease) ([]core.Lease, error) {
	for _, v := range verified {
		err := s.cfg.Outputs.Record(ctx, workerID, v.lease, v.result, v.outs)
		if errors.Is(err, core.ErrLeaseLost) {
			lost = append(lost, v.lease)
			continue
		}
		if err != nil {
			return lost, fmt.Errorf("complete task %s with outputs: %w", v.lease.TaskID, err)
		}
	}
	return lost, nil
}

// outputReader authenticates a read of a task's outputs.
func (s *Server) outputReader(w http.ResponseWriter, r *http.Request) (*core.Task, bool) {
	if s.outputsOff(w, r) {
		return nil, false
	}
	id, err := pathUUID(r, "id")
	if err != nil {
		s.authThenError(w, r, err)
		return nil, false
	}
	t, err := s.taskAccess(r.Context(), r, id, "read")
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return t, true
}

func (s *Server) handleOutputList(w http.ResponseWriter, r *http.Request) {
	t, ok := s.outputReader(w, r)
	if !ok {
		return
	}
	outs, err := s.cfg.Outputs.List(r.Context(), t.ID)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list outputs of task %s: %w", t.ID, err))
		return
	}
	resp := wire.OutputsResponse{TaskID: t.ID, State: t.State, Outputs: make([]wire.Output, len(outs))}
	for i, o := range outs {
		resp.Outputs[i] = wire.Output{
			Name: o.Name, Size: o.Size, SHA256: o.SHA256, ContentType: o.ContentType, Attempt: o.Attempt,
			CreatedAt: o.CreatedAt, ExpiresAt: o.ExpiresAt,
			URL: "/v1/tasks/" + t.ID.String() + "/outputs/" + url.PathEscape(o.Name),
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleOutputGet redirects to a signed download URL of the bucket, or
// serves the bytes from the embedded store.
func (s *Server) handleOutputGet(w http.ResponseWriter, r *http.Request) {
	t, ok := s.outputReader(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	o, err := s.cfg.Outputs.Find(r.Context(), t.ID, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	u, err := s.cfg.Outputs.DownloadURL(r.Context(), o)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("sign download of output %q: %w", name, err))
		return
	}
	if u != "" {
		http.Redirect(w, r, u, http.StatusTemporaryRedirect)
		return
	}
	rc, _, err := s.cfg.Outputs.Store().Open(r.Context(), o.BlobKey)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("read output %q of task %s: %w", name, t.ID, err))
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", o.ContentType)
	h.Set("Content-Length", strconv.FormatInt(o.Size, 10))
	h.Set("Content-Disposition", "attachment; filename*=UTF-8''"+url.PathEscape(o.Name))
	h.Set("X-Drover-SHA256", o.SHA256)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil && !errors.Is(err, r.Context().Err()) {
		s.logger.WarnContext(r.Context(), "send output", "task", t.ID, "output", name, "err", err)
	}
}
