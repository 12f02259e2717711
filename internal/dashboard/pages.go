package dashboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
)

// Page limits.
const (
	defaultWorkerLimit = 500
	maxWorkerLimit     = 10000
	defaultTaskLimit   = 50
	maxTaskLimit       = 1000
	defaultEventLimit  = 100
	maxEventLimit      = 1000
	detailEvents       = 50
	detailLogs         = 500
	maxFilterLen       = 128
)

var workerStates = []string{"live", "all", "requested", "provisioning", "booting", "ready", "draining", "terminating", "terminated", "failed"}

var taskStates = []string{"queued", "running", "succeeded", "failed", "cancelled"}

var eventKindRe = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// workersData is the workers page.
type workersData struct {
	State, Pool string
	Limit       int
	States      []string
	Workers     []*core.Worker
	Truncated   bool
}

func (h *Handler) handleWorkers(r *http.Request, v *view) (string, error) {
	q := newQuery(r.URL.Query(), "state", "pool", "limit")
	d := &workersData{States: workerStates}
	d.State = q.oneOf("state", "live", workerStates...)
	d.Pool = q.str("pool", maxFilterLen)
	d.Limit = q.intIn("limit", defaultWorkerLimit, 1, maxWorkerLimit)
	if q.err != nil {
		return "", q.err
	}
	p := &store.WorkerListParams{Pool: d.Pool, Limit: d.Limit + 1}
	switch d.State {
	case "live":
		p.LiveOnly = true
	case "all":
	default:
		p.States = []core.WorkerState{core.WorkerState(d.State)}
	}
	ws, err := h.st.WorkerList(r.Context(), p)
	if err != nil {
		return "", fmt.Errorf("list workers: %w", err)
	}
	if len(ws) > d.Limit {
		ws, d.Truncated = ws[:d.Limit], true
	}
	d.Workers = ws
	v.Title, v.Nav, v.Data = "Workers", "workers", d
	return "workers", nil
}

// gpuRow is one GPU of a worker with its latest metrics.
type gpuRow struct {
	core.GPU
}

// workerData is the worker detail page.
type workerData struct {
	Worker  *core.Worker
	GPUs    []gpuRow
	Running []*core.Task
	Events  []*core.Event
	Logs    []*core.LogLine
	// NextLogs is the after= of the next page of logs (0 = none).
	NextLogs int64
	After    int64
}

func (h *Handler) handleWorker(r *http.Request, v *view) (string, error) {
	id, err := pathID("worker", r.PathValue("id"))
	if err != nil {
		return "", err
	}
	q := newQuery(r.URL.Query(), "after")
	after := q.id("after")
	if q.err != nil {
		return "", q.err
	}
	ctx := r.Context()
	w, err := h.st.WorkerGet(ctx, id)
	if errors.Is(err, core.ErrNotFound) {
		return "", notFound("no worker with id %s", id)
	}
	if err != nil {
		return "", fmt.Errorf("get worker %s: %w", id, err)
	}
	d := &workerData{Worker: w, After: after, GPUs: gpusOf(w)}
	if d.Running, err = h.st.TaskList(ctx, &store.TaskListParams{WorkerID: &id, States: []core.TaskState{core.TaskRunning}, Limit: 100}); err != nil {
		return "", fmt.Errorf("list tasks of worker %s: %w", id, err)
	}
	if d.Events, err = h.st.EventList(ctx, &store.EventListParams{WorkerID: id.String(), Limit: detailEvents}); err != nil {
		return "", fmt.Errorf("list events of worker %s: %w", id, err)
	}
	if d.Logs, err = h.st.LogList(ctx, &store.LogListParams{WorkerID: id.String(), AfterID: after, Limit: detailLogs}); err != nil {
		return "", fmt.Errorf("list logs of worker %s: %w", id, err)
	}
	if len(d.Logs) == detailLogs {
		d.NextLogs = d.Logs[len(d.Logs)-1].ID
	}
	v.Title, v.Nav, v.Data = "Worker "+id.String(), "workers", d
	return "worker", nil
}

// gpusOf merges the worker's GPU inventory with the GPU metrics of its
// latest heartbeat ({"gpus":[…]}), by index.
func gpusOf(w *core.Worker) []gpuRow {
	var m struct {
		GPUs []core.GPU `json:"gpus"`
	}
	if len(w.Metrics) > 0 {
		_ = json.Unmarshal(w.Metrics, &m) // metrics are free-form; unreadable ones are simply not shown
	}
	rows := make([]gpuRow, 0, max(len(w.GPUs), len(m.GPUs)))
	for _, g := range w.GPUs {
		rows = append(rows, gpuRow{g})
	}
	for _, g := range m.GPUs {
		found := false
		for i := range rows {
			if rows[i].Index == g.Index {
				found = true
				if g.Name != "" {
					rows[i].Name = g.Name
				}
				if g.MemoryMiB > 0 {
					rows[i].MemoryMiB = g.MemoryMiB
				}
				rows[i].MemUsedMiB, rows[i].UtilPercent, rows[i].TempC, rows[i].PowerW = g.MemUsedMiB, g.UtilPercent, g.TempC, g.PowerW
			}
		}
		if !found {
			rows = append(rows, gpuRow{g})
		}
	}
	return rows
}

// tasksData is the tasks page.
type tasksData struct {
	State, Owner, Pool, Type string
	Limit                    int
	States                   []string
	Tasks                    []*core.Task
	// Next is the query of the next (older) page, "" when none.
	Next string
}

func (h *Handler) handleTasks(r *http.Request, v *view) (string, error) {
	q := newQuery(r.URL.Query(), "state", "owner", "pool", "type", "before", "limit")
	d := &tasksData{States: taskStates}
	d.State = q.oneOf("state", "", taskStates...)
	d.Owner = q.str("owner", maxFilterLen)
	d.Pool = q.str("pool", maxFilterLen)
	d.Type = q.str("type", maxFilterLen)
	before := q.uuid("before")
	d.Limit = q.intIn("limit", defaultTaskLimit, 1, maxTaskLimit)
	if q.err != nil {
		return "", q.err
	}
	p := &store.TaskListParams{Owner: d.Owner, Pool: d.Pool, Type: d.Type, BeforeID: before, Limit: d.Limit}
	if d.State != "" {
		p.States = []core.TaskState{core.TaskState(d.State)}
	}
	ts, err := h.st.TaskList(r.Context(), p)
	if err != nil {
		return "", fmt.Errorf("list tasks: %w", err)
	}
	d.Tasks = ts
	if len(ts) == d.Limit {
		nq := url.Values{}
		for k, val := range map[string]string{"state": d.State, "owner": d.Owner, "pool": d.Pool, "type": d.Type} {
			if val != "" {
				nq.Set(k, val)
			}
		}
		if d.Limit != defaultTaskLimit {
			nq.Set("limit", strconv.Itoa(d.Limit))
		}
		nq.Set("before", ts[len(ts)-1].ID.String())
		d.Next = "/tasks?" + nq.Encode()
	}
	v.Title, v.Nav, v.Data = "Tasks", "tasks", d
	return "tasks", nil
}

// taskData is the task detail page.
type taskData struct {
	Task   *core.Task
	Params string
	Result string
	Events []*core.Event
	Logs   []*core.LogLine
}

func (h *Handler) handleTask(r *http.Request, v *view) (string, error) {
	id, err := pathID("task", r.PathValue("id"))
	if err != nil {
		return "", err
	}
	if q := newQuery(r.URL.Query()); q.err != nil {
		return "", q.err
	}
	ctx := r.Context()
	t, err := h.st.TaskGet(ctx, id)
	if errors.Is(err, core.ErrNotFound) {
		return "", notFound("no task with id %s", id)
	}
	if err != nil {
		return "", fmt.Errorf("get task %s: %w", id, err)
	}
	d := &taskData{Task: t, Params: prettyJSON(t.Params), Result: prettyJSON(t.Result)}
	if d.Events, err = h.st.EventList(ctx, &store.EventListParams{TaskID: id.String(), Limit: detailEvents}); err != nil {
		return "", fmt.Errorf("list events of task %s: %w", id, err)
	}
	if d.Logs, err = h.st.LogList(ctx, &store.LogListParams{TaskID: id.String(), Limit: detailLogs}); err != nil {
		return "", fmt.Errorf("list logs of task %s: %w", id, err)
	}
	v.Title, v.Nav, v.Data = "Task "+id.String(), "tasks", d
	return "task", nil
}

// prettyJSON indents a JSON document for reading, with <, > and & shown as
// themselves (the template escapes them for HTML). Keys come out sorted.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return string(raw)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// eventsData is the events page.
type eventsData struct {
	Kind, Pool, Worker, Task string
	Limit                    int
	Events                   []*core.Event
	Next                     string
}

func (h *Handler) handleEvents(r *http.Request, v *view) (string, error) {
	q := newQuery(r.URL.Query(), "kind", "pool", "worker", "task", "before", "limit")
	d := &eventsData{}
	d.Kind = q.str("kind", 64)
	if d.Kind != "" && !eventKindRe.MatchString(d.Kind) {
		q.fail("parameter kind=%s: want an event kind such as worker.failed", strconv.Quote(truncate(d.Kind, 32)))
	}
	d.Pool = q.str("pool", maxFilterLen)
	if w := q.uuid("worker"); w != nil {
		d.Worker = w.String()
	}
	if t := q.uuid("task"); t != nil {
		d.Task = t.String()
	}
	before := q.id("before")
	d.Limit = q.intIn("limit", defaultEventLimit, 1, maxEventLimit)
	if q.err != nil {
		return "", q.err
	}
	p := &store.EventListParams{Pool: d.Pool, WorkerID: d.Worker, TaskID: d.Task, BeforeID: before, Limit: d.Limit}
	if d.Kind != "" {
		p.Kinds = []core.EventKind{core.EventKind(d.Kind)}
	}
	evs, err := h.st.EventList(r.Context(), p)
	if err != nil {
		return "", fmt.Errorf("list events: %w", err)
	}
	d.Events = evs
	if len(evs) == d.Limit {
		nq := url.Values{}
		for k, val := range map[string]string{"kind": d.Kind, "pool": d.Pool, "worker": d.Worker, "task": d.Task} {
			if val != "" {
				nq.Set(k, val)
			}
		}
		if d.Limit != defaultEventLimit {
			nq.Set("limit", strconv.Itoa(d.Limit))
		}
		nq.Set("before", strconv.FormatInt(evs[len(evs)-1].ID, 10))
		d.Next = "/events?" + nq.Encode()
	}
	v.Title, v.Nav, v.Data = "Events", "events", d
	return "events", nil
}

// isUUID reports whether s is a UUID (event worker and task ids link to
// their pages only then).
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil
}
