package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// DecodeSubmit decodes one task submission.
func DecodeSubmit(body []byte) (*wire.SubmitRequest, error) {
	var req wire.SubmitRequest
	if err := decodeJSONBytes(body, wire.MaxSubmitBody, &req, false); err != nil {
		return nil, err
	}
	return &req, nil
}

// DecodeBatch decodes a batch submission.
func DecodeBatch(body []byte) (*wire.BatchSubmitRequest, error) {
	// The items are decoded one by one so that an error inside one (an
	// unknown field, a value of the wrong type) names its index:
	// "tasks[7].colour".
	var raw struct {
		Tasks []json.RawMessage `json:"tasks"`
	}
	if err := decodeJSONBytes(body, wire.MaxBatchBody, &raw, false); err != nil {
		return nil, err
	}
	switch {
	case len(raw.Tasks) == 0:
		return nil, core.Invalid("tasks", "at least one task is required")
	case len(raw.Tasks) > wire.MaxBatchTasks:
		return nil, &core.Error{Code: core.ETOOLARGE, Field: "tasks", Message: fmt.Sprintf("%d tasks; at most %d per batch", len(raw.Tasks), wire.MaxBatchTasks)}
	}
	req := &wire.BatchSubmitRequest{Tasks: make([]wire.SubmitRequest, len(raw.Tasks))}
	for i, item := range raw.Tasks {
		if err := decodeJSONBytes(item, int64(len(item))+1, &req.Tasks[i], false); err != nil {
			if e, ok := errors.AsType[*core.Error](err); ok {
				prefixed := *e
				prefixed.Field = fmt.Sprintf("tasks[%d]", i)
				if e.Field != "" && e.Field != "body" {
					prefixed.Field += "." + e.Field
				}
				return nil, &prefixed
			}
			return nil, err
		}
	}
	return req, nil
}

// toQueue converts a wire submission, applying an owner token's owner.
func toQueue(in *wire.SubmitRequest, p principal, field string) (queue.SubmitRequest, error) {
	owner := in.Owner
	if p.role == roleOwner {
		if owner != "" && owner != p.owner {
			return queue.SubmitRequest{}, &core.Error{Code: core.EFORBIDDEN, Field: field + "owner",
				Message: "this token may only submit tasks of its own owner"}
		}
		owner = p.owner
	}
	out := queue.SubmitRequest{
		Type: in.Type, Params: in.Params, Owner: owner, Priority: in.Priority, Pool: in.Pool,
		DependsOn: in.DependsOn, MaxAttempts: in.MaxAttempts, MaxLost: in.MaxLost,
		IdempotencyKey: in.IdempotencyKey, CallbackURL: in.CallbackURL,
	}
	if in.Timeout != nil {
		d := in.Timeout.D()
		out.Timeout = &d
	}
	if in.TimeoutS != nil {
		const maxSecs = float64(core.MaxTaskTimeout / time.Second)
		switch {
		case in.Timeout != nil:
			return queue.SubmitRequest{}, core.Invalid(field+"timeout_s", "give timeout or timeout_s, not both")
		case *in.TimeoutS < 0 || *in.TimeoutS > maxSecs:
			return queue.SubmitRequest{}, core.Invalid(field+"timeout_s", "is %g; it must be between 1 and %g seconds (7 days)", *in.TimeoutS, maxSecs)
		}
		d := time.Duration(*in.TimeoutS * float64(time.Second))
		out.Timeout = &d
	}
	return out, nil
}

// submitter authenticates a submit: the operator or an owner token.
func (s *Server) submitter(w http.ResponseWriter, r *http.Request) (principal, bool) {
	p, err := s.authenticate(r)
	if err == nil && p.role != roleOperator && p.role != roleOwner {
		err = s.requireOperator(p, "submit tasks")
	}
	if err != nil {
		s.writeError(w, r, err)
		return p, false
	}
	return p, true
}

func (s *Server) handleTaskSubmit(w http.ResponseWriter, r *http.Request) {
	p, ok := s.submitter(w, r)
	if !ok {
		return
	}
	body, err := readBody(r, wire.MaxSubmitBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := DecodeSubmit(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := toQueue(in, p, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.queue.Submit(r.Context(), []queue.SubmitRequest{req})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("submit task: %w", err))
		return
	}
	if len(res) != 1 {
		s.writeError(w, r, fmt.Errorf("submit task: queue returned %d results for 1 task", len(res)))
		return
	}
	status := http.StatusCreated
	if res[0].Existing {
		status = http.StatusOK
	}
	writeJSON(w, status, &wire.SubmitResponse{Task: res[0].Task, Existing: res[0].Existing})
}

func (s *Server) handleTaskSubmitBatch(w http.ResponseWriter, r *http.Request) {
	p, ok := s.submitter(w, r)
	if !ok {
		return
	}
	body, err := readBody(r, wire.MaxBatchBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := DecodeBatch(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	reqs := make([]queue.SubmitRequest, len(in.Tasks))
	for i := range in.Tasks {
		if reqs[i], err = toQueue(&in.Tasks[i], p, fmt.Sprintf("tasks[%d].", i)); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	res, err := s.queue.Submit(r.Context(), reqs)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("submit %d tasks: %w", len(reqs), err))
		return
	}
	out := wire.BatchSubmitResponse{Results: make([]wire.SubmitResponse, len(res))}
	for i, x := range res {
		out.Results[i] = wire.SubmitResponse{Task: x.Task, Existing: x.Existing}
	}
	writeJSON(w, http.StatusCreated, &out)
}

// taskReader authenticates a read or cancel of task id and returns the
// task: the operator sees every task, an owner token its owner's, a worker
// token the tasks leased to its worker.
func (s *Server) taskAccess(ctx context.Context, r *http.Request, id uuid.UUID, what string) (*core.Task, error) {
	p, err := s.authenticate(r)
	if err != nil {
		return nil, err
	}
	var workerID uuid.UUID
	switch p.role {
	case roleOperator, roleOwner:
	default:
		wid, ok := s.workers.workerOf(p.hash)
		if !ok {
			return nil, errUnauthorized()
		}
		workerID = wid
	}
	t, err := s.queue.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, err)
	}
	switch p.role {
	case roleOwner:
		if t.Owner != p.owner {
			return nil, errForbidden(what + " tasks of another owner")
		}
	case roleNone:
		if what != "read" || t.WorkerID == nil || *t.WorkerID != workerID {
			return nil, errForbidden(what + " a task this worker does not hold")
		}
	}
	return t, nil
}

func (s *Server) handleTaskGet(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r, "id")
	if err == nil {
		var t *core.Task
		if t, err = s.taskAccess(r.Context(), r, id, "read"); err == nil {
			writeJSON(w, http.StatusOK, t)
			return
		}
	}
	s.authThenError(w, r, err)
}

func (s *Server) handleTaskCancel(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r, "id")
	if err != nil {
		s.authThenError(w, r, err)
		return
	}
	if _, err := s.taskAccess(r.Context(), r, id, "cancel"); err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.queue.Cancel(r.Context(), id)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("cancel task %s: %w", id, err))
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleTaskRetry(w http.ResponseWriter, r *http.Request) {
	if !s.operator(w, r, "retry tasks") {
		return
	}
	id, err := pathUUID(r, "id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.queue.Retry(r.Context(), id)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("retry task %s: %w", id, err))
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// ParseTaskFilter reads the query of GET /v1/tasks.
func ParseTaskFilter(r *http.Request) (*store.TaskListParams, error) {
	p := &store.TaskListParams{
		Owner: r.URL.Query().Get("owner"),
		Pool:  r.URL.Query().Get("pool"),
		Type:  r.URL.Query().Get("type"),
	}
	for _, st := range queryList(r, "state") {
		ts := core.TaskState(st)
		if !ts.Valid() {
			return nil, core.Invalid("state", "unknown task state %q (want queued, running, succeeded, failed or cancelled)", truncate(st, 32))
		}
		p.States = append(p.States, ts)
	}
	var err error
	if p.WorkerID, err = queryUUID(r, "worker"); err != nil {
		return nil, err
	}
	if p.BeforeID, err = queryUUID(r, "before"); err != nil {
		return nil, err
	}
	if p.Limit, err = queryInt(r, "limit", 100, 1, 1000); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Server) handleTaskList(w http.ResponseWriter, r *http.Request) {
	p, err := s.authenticate(r)
	if err == nil && p.role != roleOperator && p.role != roleOwner {
		err = s.requireOperator(p, "list tasks")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := ParseTaskFilter(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if p.role == roleOwner {
		if f.Owner != "" && f.Owner != p.owner {
			s.writeError(w, r, &core.Error{Code: core.EFORBIDDEN, Field: "owner", Message: "this token may only list its own owner's tasks"})
			return
		}
		f.Owner = p.owner
	}
	tasks, err := s.queue.List(r.Context(), f)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list tasks: %w", err))
		return
	}
	if tasks == nil {
		tasks = []*core.Task{}
	}
	writeJSON(w, http.StatusOK, wire.TaskList{Tasks: tasks})
}

// operator authenticates an operator-only request.
func (s *Server) operator(w http.ResponseWriter, r *http.Request, what string) bool {
	p, err := s.authenticate(r)
	if err == nil {
		err = s.requireOperator(p, what)
	}
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

func (s *Server) handleWorkerList(w http.ResponseWriter, r *http.Request) {
	if !s.operator(w, r, "list workers") {
		return
	}
	f := &store.WorkerListParams{Pool: r.URL.Query().Get("pool")}
	for _, st := range queryList(r, "state") {
		ws := core.WorkerState(st)
		if !ws.Valid() {
			s.writeError(w, r, core.Invalid("state", "unknown worker state %q", truncate(st, 32)))
			return
		}
		f.States = append(f.States, ws)
	}
	var err error
	if f.LiveOnly, err = queryBool(r, "live"); err != nil {
		s.writeError(w, r, err)
		return
	}
	if f.Limit, err = queryInt(r, "limit", 0, 0, 100000); err != nil {
		s.writeError(w, r, err)
		return
	}
	ws, err := s.store.WorkerList(r.Context(), f)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list workers: %w", err))
		return
	}
	if ws == nil {
		ws = []*core.Worker{}
	}
	writeJSON(w, http.StatusOK, wire.WorkerList{Workers: ws})
}

// DecodeWorkerAction decodes the optional body of drain/terminate.
func DecodeWorkerAction(body []byte) (*wire.WorkerActionRequest, error) {
	var req wire.WorkerActionRequest
	if err := decodeJSONBytes(body, wire.MaxBody, &req, true); err != nil {
		return nil, err
	}
	if len(req.Reason) > 512 {
		return nil, core.Invalid("reason", "longer than 512 bytes")
	}
	return &req, nil
}

// drainFrom and terminateFrom are the states operator actions apply to.
var (
	drainFrom     = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady}
	terminateFrom = []core.WorkerState{core.WorkerRequested, core.WorkerProvisioning, core.WorkerBooting, core.WorkerReady, core.WorkerDraining, core.WorkerFailed}
)

func (s *Server) handleWorkerDrain(w http.ResponseWriter, r *http.Request) {
	s.workerAction(w, r, "drain", core.WorkerDraining, drainFrom)
}

func (s *Server) handleWorkerTerminate(w http.ResponseWriter, r *http.Request) {
	s.workerAction(w, r, "terminate", core.WorkerTerminating, terminateFrom)
}

// workerAction asks the orchestrator to move a worker to state on the
// operator's request (202 Accepted with the worker as it is now; the next
// tick applies it). This is not a failure: the reason says "operator".
func (s *Server) workerAction(w http.ResponseWriter, r *http.Request, verb string, state core.WorkerState, from []core.WorkerState) {
	if !s.operator(w, r, verb+" workers") {
		return
	}
	id, err := pathUUID(r, "id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := readBody(r, wire.MaxBody)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := DecodeWorkerAction(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	reason := "operator"
	if req.Reason != "" {
		reason = "operator: " + req.Reason
	}
	ctx := r.Context()
	before, err := s.store.WorkerGet(ctx, id)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%s worker %s: %w", verb, id, err))
		return
	}
	if before.State == state {
		writeJSON(w, http.StatusOK, before) // idempotent
		return
	}
	if !slices.Contains(from, before.State) {
		s.writeError(w, r, fmt.Errorf("%s worker %s: %w", verb, id,
			core.Errorf(core.ECONFLICT, "worker is %s", before.State)))
		return
	}
	// The orchestrator is the only writer of worker state: the action is
	// recorded as a request that its next tick applies (with its event),
	// and the loop is woken at once.
	if err := s.store.WorkerRequestPut(ctx, &store.WorkerRequest{
		WorkerID: id, Action: store.WorkerAction(verb), Reason: reason, RequestedBy: "operator", RequestedAt: s.clock.Now(),
	}); err != nil {
		s.writeError(w, r, fmt.Errorf("%s worker %s: %w", verb, id, err))
		return
	}
	if s.cfg.Wake != nil {
		s.cfg.Wake("operator " + verb)
	}
	writeJSON(w, http.StatusAccepted, before)
}

func (s *Server) handleEventList(w http.ResponseWriter, r *http.Request) {
	if !s.operator(w, r, "read events") {
		return
	}
	q := r.URL.Query()
	f := &store.EventListParams{Pool: q.Get("pool"), WorkerID: q.Get("worker"), TaskID: q.Get("task")}
	for _, k := range queryList(r, "kind") {
		f.Kinds = append(f.Kinds, core.EventKind(k))
	}
	var err error
	if f.Since, err = queryTime(r, "since"); err == nil {
		if f.BeforeID, err = queryInt64(r, "before"); err == nil {
			if f.AfterID, err = queryInt64(r, "after"); err == nil {
				f.Limit, err = queryInt(r, "limit", 100, 1, 10000)
			}
		}
	}
	follow, ferr := queryBool(r, "follow")
	if err == nil {
		err = ferr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	evs, err := s.store.EventList(r.Context(), f)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list events: %w", err))
		return
	}
	if follow && f.AfterID > 0 {
		evs = settled(evs, s.clock.Now(), func(e *core.Event) time.Time { return e.Time })
	}
	if evs == nil {
		evs = []*core.Event{}
	}
	writeJSON(w, http.StatusOK, wire.EventList{Events: evs})
}

func (s *Server) handleLogList(w http.ResponseWriter, r *http.Request) {
	p, err := s.authenticate(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := &store.LogListParams{TaskID: q.Get("task"), WorkerID: q.Get("worker")}
	if f.TaskID == "" && f.WorkerID == "" {
		s.authThenError(w, r, core.Invalid("task", "one of task or worker is required"))
		return
	}
	switch p.role {
	case roleOperator:
	case roleOwner:
		// An owner may read the logs of its own tasks.
		tid, err := uuid.Parse(f.TaskID)
		if err != nil || f.WorkerID != "" {
			s.writeError(w, r, errForbidden("read logs other than its own tasks'"))
			return
		}
		if _, err := s.taskAccess(r.Context(), r, tid, "read"); err != nil {
			s.writeError(w, r, err)
			return
		}
	default:
		s.writeError(w, r, s.requireOperator(p, "read logs"))
		return
	}
	if f.AfterID, err = queryInt64(r, "after"); err == nil {
		f.Limit, err = queryInt(r, "limit", 1000, 1, 10000)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	follow, err := queryBool(r, "follow")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	lines, err := s.store.LogList(r.Context(), f)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list logs: %w", err))
		return
	}
	if follow {
		lines = settled(lines, s.clock.Now(), func(l *core.LogLine) time.Time { return l.Time })
	}
	if lines == nil {
		lines = []*core.LogLine{}
	}
	writeJSON(w, http.StatusOK, wire.LogList{Lines: lines})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !s.operator(w, r, "read the fleet status") {
		return
	}
	if s.cfg.Status == nil {
		s.writeError(w, r, core.Errorf(core.EUNAVAILABLE, "status is not available on this server"))
		return
	}
	st, err := s.cfg.Status(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("build status: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, st)
}
