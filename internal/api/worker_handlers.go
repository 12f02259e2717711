package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// Limits of worker-reported fields.
const (
	maxInstanceIDLen   = 256
	maxAgentVersionLen = 64
	maxGPUs            = 64
	maxMetricsBytes    = 64 << 10
	maxProgressMsgLen  = 1024
)

// workerRequest authenticates a request addressed to /v1/workers/{id}/….
func (s *Server) workerRequest(w http.ResponseWriter, r *http.Request) (uuid.UUID, workerInfo, bool) {
	p, err := s.authenticate(r)
	if err != nil {
		s.writeError(w, r, err)
		return uuid.Nil, workerInfo{}, false
	}
	id, err := pathUUID(r, "id")
	if err != nil {
		if p.role != roleOperator && !s.workers.knownHash(p.hash) {
			err = errUnauthorized()
		}
		s.writeError(w, r, err)
		return uuid.Nil, workerInfo{}, false
	}
	wi, err := s.authWorker(r.Context(), p, id)
	if err != nil {
		s.writeError(w, r, err)
		return uuid.Nil, workerInfo{}, false
	}
	return id, wi, true
}

// DecodeRegister decodes and validates a register body.
func DecodeRegister(body []byte) (*wire.RegisterRequest, error) {
	var req wire.RegisterRequest
	if err := decodeJSONBytes(body, wire.MaxBody, &req, true); err != nil {
		return nil, err
	}
	switch {
	case len(req.InstanceID) > maxInstanceIDLen:
		return nil, core.Invalid("instance_id", "longer than %d bytes", maxInstanceIDLen)
	case len(req.AgentVersion) > maxAgentVersionLen:
		return nil, core.Invalid("agent_version", "longer than %d bytes", maxAgentVersionLen)
	case len(req.GPUs) > maxGPUs:
		return nil, core.Invalid("gpus", "more than %d GPUs", maxGPUs)
	}
	for i, g := range req.GPUs {
		if len(g.Name) > 256 || len(g.UUID) > 256 {
			return nil, core.Invalid(fmt.Sprintf("gpus[%d].name", i), "longer than 256 bytes")
		}
	}
	return &req, nil
}

func (s *Server) handleWorkerRegister(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.workerRequest(w, r)
	if !ok {
		return
	}
	body, err := readBody(r, wire.MaxBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := DecodeRegister(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wk, err := s.queue.Register(r.Context(), id, queue.RegisterInfo{
		InstanceID: req.InstanceID, AgentVersion: req.AgentVersion, GPUs: req.GPUs,
	})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("register worker %s: %w", id, err))
		return
	}
	conc := 1
	if s.cfg.PoolConcurrency != nil {
		if c := s.cfg.PoolConcurrency(wk.Pool); c > 0 {
			conc = c
		}
	}
	if wk.Concurrency > 0 {
		conc = wk.Concurrency
	}
	writeJSON(w, http.StatusOK, wire.RegisterResponse{
		WorkerID:          id.String(),
		Pool:              wk.Pool,
		HeartbeatInterval: wire.Duration(s.cfg.HeartbeatInterval),
		HeartbeatTimeout:  wire.Duration(s.cfg.HeartbeatTimeout),
		LeaseDuration:     wire.Duration(s.cfg.LeaseDuration),
		Concurrency:       conc,
		ClaimWait:         wire.Duration(wire.MaxClaimWait),
		// Seconds, per the JSON convention of docs/api.md.
		ServerLostTimeoutS: s.cfg.ServerLostTimeout.Seconds(),
	})
}

// DecodeHeartbeat decodes and validates a heartbeat body.
func DecodeHeartbeat(body []byte) (*wire.HeartbeatRequest, error) {
	var req wire.HeartbeatRequest
	if err := decodeJSONBytes(body, wire.MaxBody, &req, true); err != nil {
		return nil, err
	}
	if len(req.Leases) > wire.MaxHeartbeatLeases {
		return nil, core.Invalid("leases", "more than %d leases", wire.MaxHeartbeatLeases)
	}
	for i, l := range req.Leases {
		if l.TaskID == uuid.Nil || l.Token == uuid.Nil {
			return nil, core.Invalid(fmt.Sprintf("leases[%d]", i), "task_id and lease_token are required")
		}
	}
	if len(req.Metrics) > maxMetricsBytes {
		return nil, &core.Error{Code: core.ETOOLARGE, Field: "metrics", Message: fmt.Sprintf("longer than %d bytes", maxMetricsBytes)}
	}
	if len(req.Metrics) > 0 && string(req.Metrics) != "null" && req.Metrics[0] != '{' {
		return nil, core.Invalid("metrics", "want a JSON object")
	}
	if len(req.Progress) > wire.MaxHeartbeatLeases {
		return nil, core.Invalid("progress", "more than %d items", wire.MaxHeartbeatLeases)
	}
	for i, p := range req.Progress {
		if err := validProgress(fmt.Sprintf("progress[%d].", i), p.Progress, p.Message); err != nil {
			return nil, err
		}
	}
	return &req, nil
}

func validProgress(prefix string, p *float64, msg string) error {
	if p != nil && (math.IsNaN(*p) || *p < 0 || *p > 1) {
		return core.Invalid(prefix+"progress", "must be between 0 and 1")
	}
	if len(msg) > maxProgressMsgLen {
		return core.Invalid(prefix+"message", "longer than %d bytes", maxProgressMsgLen)
	}
	return nil
}

func (s *Server) handleWorkerHeartbeat(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.workerRequest(w, r)
	if !ok {
		return
	}
	body, err := readBody(r, wire.MaxBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := DecodeHeartbeat(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	reply, err := s.queue.Heartbeat(ctx, id, queue.HeartbeatInfo{Leases: req.Leases, Metrics: req.Metrics})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("heartbeat of worker %s: %w", id, err))
		return
	}
	lost := map[uuid.UUID]bool{}
	for _, l := range reply.Lost {
		lost[l.TaskID] = true
	}
	for _, p := range req.Progress {
		if lost[p.TaskID] {
			continue
		}
		err := s.queue.Progress(ctx, id, core.Lease{TaskID: p.TaskID, Token: p.LeaseToken}, p.Progress, p.Message)
		if err != nil && core.ErrorCode(err) != core.ECONFLICT {
			s.writeError(w, r, fmt.Errorf("record progress of task %s: %w", p.TaskID, err))
			return
		}
	}
	out := wire.HeartbeatResponse{Drain: reply.Drain, Stop: reply.Stop, LostLeases: reply.Lost}
	if out.LostLeases == nil {
		out.LostLeases = []core.Lease{}
	}
	writeJSON(w, http.StatusOK, out)
}

// DecodeClaim decodes a claim body (which may be empty). A body that
// carries completions may be as large as a batched completion's; one
// without stays within wire.MaxBody.
func DecodeClaim(body []byte) (*wire.ClaimRequest, error) {
	var req wire.ClaimRequest
	if err := decodeJSONBytes(body, wire.MaxCompleteBatchBody, &req, true); err != nil {
		return nil, err
	}
	if len(req.Complete) == 0 && len(body) > wire.MaxBody {
		return nil, tooLarge(wire.MaxBody)
	}
	if req.Max == 0 {
		req.Max = 1
	}
	if req.Max < 1 || req.Max > wire.MaxClaim {
		return nil, core.Invalid("max", "must be between 1 and %d", wire.MaxClaim)
	}
	if err := validCompleteItems("complete", req.Complete); err != nil {
		return nil, err
	}
	return &req, nil
}

func (s *Server) handleTaskClaim(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.workerRequest(w, r)
	if !ok {
		return
	}
	wait, err := parseWait(r, wire.MaxClaimWait)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := readBody(r, wire.MaxCompleteBatchBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := DecodeClaim(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Completions carried by the claim commit first, so the slots they free
	// are claimable in this same request. Plain ones (no outputs to
	// verify) ride with the claim into the dispatcher's pass, which
	// commits them in the transaction of its claims; the others commit on
	// their own first. A stale lease is that item's outcome and does not
	// stop the claim; any other failure answers the error, and nothing is
	// claimed.
	var completed *wire.CompleteBatchResponse
	var carry []store.TaskCompletion
	if len(req.Complete) > 0 {
		carry, completed, err = s.carryOrComplete(r.Context(), id, req.Complete)
		if err != nil {
			s.writeError(w, r, renameItemsField(err, "complete"))
			return
		}
	}
	// Every claim goes through the dispatcher, which serves all the claims
	// that arrive together with one store transaction.
	tasks, carried, err := s.claims.ClaimComplete(r.Context(), id, req.Max, wait, s.stopping, carry)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("claim for worker %s: %w", id, err))
		return
	}
	if len(carry) > 0 {
		if carried == nil {
			// No pass took the claim (the agent went away, or its wait or
			// the server ended first): complete as a batched completion
			// does, even for an agent that left, as when the completions
			// committed before the claim.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			lost, err := s.completeItems(ctx, id, req.Complete)
			cancel()
			if err != nil {
				s.writeError(w, r, renameItemsField(err, "complete"))
				return
			}
			carried = &queue.Carried{Lost: lost}
		}
		completed = &wire.CompleteBatchResponse{Lost: carried.Lost}
	}
	if r.Context().Err() != nil && len(tasks) > 0 {
		// The agent went away (a drain cut its long poll short) while these
		// tasks were being granted: nobody will run them, so hand them back
		// now instead of letting them wait for lease expiry and count a loss.
		s.releaseUndelivered(r, id, tasks)
		return
	}
	out := wire.ClaimResponse{Tasks: make([]wire.ClaimedTask, 0, len(tasks)), Complete: completed}
	for _, t := range tasks {
		ct := wire.ClaimedTask{Task: *t}
		if t.LeaseToken != nil {
			ct.LeaseToken = *t.LeaseToken
		}
		out.Tasks = append(out.Tasks, ct)
	}
	s.metrics.claimed.Add(float64(len(tasks)))
	writeJSON(w, http.StatusOK, &out)
}

// releaseUndelivered returns claimed tasks that could not be delivered.
func (s *Server) releaseUndelivered(r *http.Request, workerID uuid.UUID, tasks []*core.Task) {
	leases := make([]core.Lease, 0, len(tasks))
	for _, t := range tasks {
		if t.LeaseToken != nil {
			leases = append(leases, core.Lease{TaskID: t.ID, Token: *t.LeaseToken})
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	n, err := s.queue.Release(ctx, workerID, leases)
	if err != nil {
		s.logger.Error("release undelivered claim", "worker", workerID, "err", err)
		return
	}
	s.logger.Info("claimer went away: tasks handed back to the queue", "worker", workerID, "released", n)
}

// DecodeLogs decodes and validates a logs body.
func DecodeLogs(body []byte) (*wire.LogsRequest, error) {
	var req wire.LogsRequest
	if err := decodeJSONBytes(body, wire.MaxLogsBody, &req, false); err != nil {
		return nil, err
	}
	if len(req.Lines) > wire.MaxLogLines {
		return nil, &core.Error{Code: core.ETOOLARGE, Field: "lines", Message: fmt.Sprintf("more than %d lines", wire.MaxLogLines)}
	}
	for i, l := range req.Lines {
		switch l.Stream {
		case "", "stdout", "stderr", "agent":
		default:
			return nil, core.Invalid(fmt.Sprintf("lines[%d].stream", i), "want stdout, stderr or agent")
		}
		if len(l.Line) > wire.MaxLogLineBytes {
			return nil, &core.Error{Code: core.ETOOLARGE, Field: fmt.Sprintf("lines[%d].line", i), Message: fmt.Sprintf("longer than %d bytes", wire.MaxLogLineBytes)}
		}
		if l.TaskID != "" {
			if _, err := uuid.Parse(l.TaskID); err != nil {
				return nil, core.Invalid(fmt.Sprintf("lines[%d].task_id", i), "not a UUID")
			}
		}
	}
	return &req, nil
}

func (s *Server) handleWorkerLogs(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.workerRequest(w, r)
	if !ok {
		return
	}
	body, err := readBody(r, wire.MaxLogsBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := DecodeLogs(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.clock.Now()
	lines := make([]*core.LogLine, 0, len(req.Lines))
	for _, l := range req.Lines {
		t := l.Time
		if t.IsZero() {
			t = now
		}
		stream := l.Stream
		if stream == "" {
			stream = "stdout"
		}
		line := l.Line
		if !utf8.ValidString(line) {
			line = string([]rune(line)) // replace invalid bytes
		}
		lines = append(lines, &core.LogLine{Time: t.UTC(), WorkerID: id.String(), TaskID: l.TaskID, Stream: stream, Line: line})
	}
	if len(lines) > 0 {
		if err := s.queue.Logs(r.Context(), id, lines); err != nil {
			s.writeError(w, r, fmt.Errorf("store logs of worker %s: %w", id, err))
			return
		}
	}
	writeJSON(w, http.StatusOK, wire.OK{OK: true})
}

// leaseRequest authenticates a lease operation on /v1/tasks/{id}/…: the
// caller must be the operator or the worker named in the body (the store
// then checks that this worker holds the lease).
func (s *Server) leaseRequest(w http.ResponseWriter, r *http.Request, workerID uuid.UUID) bool {
	p, err := s.authenticate(r)
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	if workerID == uuid.Nil {
		s.writeError(w, r, core.Invalid("worker_id", "required"))
		return false
	}
	if _, err := s.authWorker(r.Context(), p, workerID); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// DecodeComplete decodes and validates a complete body.
func DecodeComplete(body []byte) (*wire.CompleteRequest, error) {
	var req wire.CompleteRequest
	if err := decodeJSONBytes(body, wire.MaxCompleteBody, &req, false); err != nil {
		return nil, err
	}
	if req.LeaseToken == uuid.Nil {
		return nil, core.Invalid("lease_token", "required")
	}
	if len(req.Result) > core.MaxResultBytes {
		return nil, &core.Error{Code: core.ETOOLARGE, Field: "result", Message: fmt.Sprintf("longer than %d bytes", core.MaxResultBytes)}
	}
	if len(req.Result) > 0 && string(req.Result) != "null" && req.Result[0] != '{' {
		return nil, core.Invalid("result", "want a JSON object")
	}
	return &req, nil
}

// leaseBody is a per-task worker call: it names a worker and a lease.
type leaseBody interface {
	LeaseHolder() (workerID, token uuid.UUID)
}

// leaseCall reads and checks a per-task worker call (complete, fail,
// progress): the task id from the path, the body within limit, decoded by
// decode, and the caller's right to act for the worker it names. It writes
// the error response itself and returns ok=false on any problem.
func leaseCall[T leaseBody](s *Server, w http.ResponseWriter, r *http.Request, limit int64, decode func([]byte) (T, error)) (uuid.UUID, T, core.Lease, bool) {
	var zero T
	taskID, err := pathUUID(r, "id")
	if err != nil {
		s.writeError(w, r, err)
		return uuid.Nil, zero, core.Lease{}, false
	}
	body, err := readBody(r, limit)
	if err != nil {
		s.writeError(w, r, err)
		return uuid.Nil, zero, core.Lease{}, false
	}
	req, err := decode(body)
	if err != nil {
		s.authThenError(w, r, err)
		return uuid.Nil, zero, core.Lease{}, false
	}
	workerID, token := req.LeaseHolder()
	if !s.leaseRequest(w, r, workerID) {
		return uuid.Nil, zero, core.Lease{}, false
	}
	return taskID, req, core.Lease{TaskID: taskID, Token: token}, true
}

func (s *Server) handleTaskComplete(w http.ResponseWriter, r *http.Request) {
	taskID, req, lease, ok := leaseCall(s, w, r, wire.MaxCompleteBody, DecodeComplete)
	if !ok {
		return
	}
	if s.completeWithOutputs(w, r, req, lease) {
		return
	}
	if err := s.queue.Complete(r.Context(), req.WorkerID, lease, req.Result); err != nil {
		s.writeError(w, r, fmt.Errorf("complete task %s: %w", taskID, err))
		return
	}
	writeJSON(w, http.StatusOK, wire.OK{OK: true})
}

// authThenError answers a body error, but an unauthenticated caller learns
// only that it is unauthenticated.
func (s *Server) authThenError(w http.ResponseWriter, r *http.Request, err error) {
	if _, aerr := s.authenticate(r); aerr != nil {
		s.writeError(w, r, aerr)
		return
	}
	s.writeError(w, r, err)
}

// DecodeFail decodes and validates a fail body.
func DecodeFail(body []byte) (*wire.FailRequest, error) {
	var req wire.FailRequest
	if err := decodeJSONBytes(body, wire.MaxBody, &req, false); err != nil {
		return nil, err
	}
	if req.LeaseToken == uuid.Nil {
		return nil, core.Invalid("lease_token", "required")
	}
	if len(req.Error) > core.MaxErrorBytes {
		// Keep the tail: that is where a handler's stderr says what went wrong.
		req.Error = "…" + req.Error[len(req.Error)-core.MaxErrorBytes+len("…"):]
	}
	return &req, nil
}

func (s *Server) handleTaskFail(w http.ResponseWriter, r *http.Request) {
	taskID, req, lease, ok := leaseCall(s, w, r, wire.MaxBody, DecodeFail)
	if !ok {
		return
	}
	t, err := s.queue.Fail(r.Context(), req.WorkerID, lease, req.Error, req.Retryable)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("fail task %s: %w", taskID, err))
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// DecodeProgress decodes and validates a progress body.
func DecodeProgress(body []byte) (*wire.ProgressRequest, error) {
	var req wire.ProgressRequest
	if err := decodeJSONBytes(body, wire.MaxBody, &req, false); err != nil {
		return nil, err
	}
	if req.LeaseToken == uuid.Nil {
		return nil, core.Invalid("lease_token", "required")
	}
	if err := validProgress("", req.Progress, req.Message); err != nil {
		return nil, err
	}
	return &req, nil
}

func (s *Server) handleTaskProgress(w http.ResponseWriter, r *http.Request) {
	taskID, req, lease, ok := leaseCall(s, w, r, wire.MaxBody, DecodeProgress)
	if !ok {
		return
	}
	if err := s.queue.Progress(r.Context(), req.WorkerID, lease, req.Progress, req.Message); err != nil {
		s.writeError(w, r, fmt.Errorf("record progress of task %s: %w", taskID, err))
		return
	}
	writeJSON(w, http.StatusOK, wire.OK{OK: true})
}
