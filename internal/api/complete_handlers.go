package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// DecodeCompleteBatch decodes and validates a batched completion.
func DecodeCompleteBatch(body []byte) (*wire.CompleteBatchRequest, error) {
	var req wire.CompleteBatchRequest
	if err := decodeJSONBytes(body, wire.MaxCompleteBatchBody, &req, false); err != nil {
		return nil, err
	}
	if len(req.Items) == 0 {
		return nil, core.Invalid("items", "at least one item is required")
	}
	if err := validCompleteItems("items", req.Items); err != nil {
		return nil, err
	}
	return &req, nil
}

// validCompleteItems checks the items of a batched completion, or of the
// completions a claim carries; errors name list[i].field.
func validCompleteItems(list string, items []wire.CompleteItem) error {
	if len(items) > wire.MaxClaim {
		return &core.Error{Code: core.ETOOLARGE, Field: list, Message: fmt.Sprintf("%d items; at most %d per request", len(items), wire.MaxClaim)}
	}
	seen := make(map[uuid.UUID]bool, len(items))
	for i, it := range items {
		f := fmt.Sprintf("%s[%d].", list, i)
		switch {
		case it.TaskID == uuid.Nil:
			return core.Invalid(f+"task_id", "required")
		case it.LeaseToken == uuid.Nil:
			return core.Invalid(f+"lease_token", "required")
		case seen[it.TaskID]:
			return core.Invalid(f+"task_id", "task %s appears twice", it.TaskID)
		case len(it.Result) > core.MaxResultBytes:
			return &core.Error{Code: core.ETOOLARGE, Field: f + "result", Message: fmt.Sprintf("longer than %d bytes", core.MaxResultBytes)}
		case len(it.Result) > 0 && string(it.Result) != "null" && it.Result[0] != '{':
			return core.Invalid(f+"result", "want a JSON object")
		}
		seen[it.TaskID] = true
	}
	return nil
}

func (s *Server) handleTaskCompleteBatch(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.workerRequest(w, r)
	if !ok {
		return
	}
	body, err := readBody(r, wire.MaxCompleteBatchBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := DecodeCompleteBatch(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	lost, err := s.completeItems(r.Context(), id, req.Items)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.CompleteBatchResponse{Lost: lost})
}

// completeItems records a worker's batched completions (checked by
// validCompleteItems) and returns the stale leases, never nil. Items with
// outputs are verified first (a bad manifest rejects the request, nothing
// recorded, with the error naming items[i]) and recorded after the others.
func (s *Server) completeItems(ctx context.Context, id uuid.UUID, req []wire.CompleteItem) ([]core.Lease, error) {
	plain, verified, lost, err := s.verifyBatchOutputs(ctx, id, req)
	if err != nil {
		return nil, err
	}
	return s.completeVerified(ctx, id, plain, verified, lost)
}

// completeVerified is completeItems after verifyBatchOutputs: the plain
// items commit (group-committed with other completions), then the verified
// ones with their outputs.
func (s *Server) completeVerified(ctx context.Context, id uuid.UUID, plain []wire.CompleteItem, verified []verifiedItem, lost []core.Lease) ([]core.Lease, error) {
	items := make([]store.TaskCompletion, len(plain))
	for i, it := range plain {
		items[i] = store.TaskCompletion{Lease: core.Lease{TaskID: it.TaskID, Token: it.LeaseToken}, Result: it.Result}
	}
	if len(items) > 0 {
		l, err := s.queue.CompleteMany(ctx, id, items)
		if err != nil {
			return nil, fmt.Errorf("complete %d tasks of worker %s: %w", len(items), id, err)
		}
		lost = append(lost, l...)
	}
	lost, err := s.recordBatchOutputs(ctx, id, verified, lost)
	if err != nil {
		return nil, err
	}
	if lost == nil {
		lost = []core.Lease{}
	}
	return lost, nil
}

// renameItemsField makes an error of completeItems name the request's own
// list: items[i].field becomes list[i].field (the outputs checks name the
// batched completion's items).
func renameItemsField(err error, list string) error {
	ce, ok := errors.AsType[*core.Error](err)
	if !ok {
		return err
	}
	rest, ok := strings.CutPrefix(ce.Field, "items")
	if !ok || (rest != "" && rest[0] != '[') {
		return err
	}
	renamed := *ce
	renamed.Field = list + rest
	return &renamed
}

// carryOrComplete handles the completions a claim carries. When every item
// is plain (no outputs to verify or record) it returns them checked, for
// the claim's own dispatcher pass to commit with its claim. Otherwise it
// completes them at once as completeItems does and returns their outcome.
// Errors are completeItems' (they name items[i]).
func (s *Server) carryOrComplete(ctx context.Context, id uuid.UUID, items []wire.CompleteItem) ([]store.TaskCompletion, *wire.CompleteBatchResponse, error) {
	plain, verified, lost, err := s.verifyBatchOutputs(ctx, id, items)
	if err != nil {
		return nil, nil, err
	}
	if len(verified) > 0 || len(lost) > 0 {
		lost, err := s.completeVerified(ctx, id, plain, verified, lost)
		if err != nil {
			return nil, nil, err
		}
		return nil, &wire.CompleteBatchResponse{Lost: lost}, nil
	}
	carry := make([]store.TaskCompletion, len(plain))
	for i, it := range plain {
		carry[i] = store.TaskCompletion{Lease: core.Lease{TaskID: it.TaskID, Token: it.LeaseToken}, Result: it.Result}
	}
	checked, err := queue.CheckCompletions(carry)
	if err != nil {
		return nil, nil, fmt.Errorf("complete %d tasks of worker %s: %w", len(carry), id, err)
	}
	return checked, nil, nil
}
