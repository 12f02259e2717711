package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
)

// TaskType is the type of every task the harness submits.
const TaskType = "chaos"

// submitBatch is the number of tasks per batch submit.
const submitBatch = 500

// handlerScript is the tasks' handler. Each attempt leaves markers in the
// markers directory: <task>.<attempt>.start (the worker id) when it starts,
// .fail when it fails on purpose (params fail_first, first attempt only) and
// .done when it finishes; the result names the attempt and the worker, so
// the harness can tell which grant a recorded result came from.
const handlerScript = `#!/bin/sh
p=$(cat)
m=%s
a="$DROVER_ATTEMPT"
printf '%%s\n' "$DROVER_WORKER_ID" > "$m/$DROVER_TASK_ID.$a.start"
case "$p" in *'"fail_first":true'*)
	if [ "$a" = 1 ]; then printf '%%s\n' "$DROVER_WORKER_ID" > "$m/$DROVER_TASK_ID.$a.fail"; echo "injected failure" >&2; exit 1; fi;;
esac
s=$(printf '%%s' "$p" | sed -n 's/.*"sleep_s":\([0-9.]*\).*/\1/p')
sleep "${s:-1}"
printf '%%s\n' "$DROVER_WORKER_ID" > "$m/$DROVER_TASK_ID.$a.done"
printf '{"attempt":%%s,"worker":"%%s"}\n' "$a" "$DROVER_WORKER_ID"
`

func writeHandler(dir, markers string) (string, error) {
	p := filepath.Join(dir, "handler.sh")
	if err := os.WriteFile(p, fmt.Appendf(nil, handlerScript, markers), 0o755); err != nil {
		return "", fmt.Errorf("write handler: %w", err)
	}
	return p, nil
}

// taskParams are one task's params.
type taskParams struct {
	I         int     `json:"i"`
	SleepS    float64 `json:"sleep_s"`
	FailFirst bool    `json:"fail_first,omitempty"`
}

// workload is the run's tasks in submit batches. Within a batch a task
// joins a chain (depends on the task before it) with probability
// ChainFraction; the first task of some batches depends on a task of the
// batch before (by id, once that batch is in).
type workload struct {
	batches [][]wire.SubmitRequest
	// crossDep[b] is the index in batch b-1 that batch b's first task
	// depends on (-1: none).
	crossDep []int
	failing  int
	chained  int
}

func newWorkload(c *Config, rng *rand.Rand) *workload {
	w := &workload{}
	maxAttempts, maxLost := 3, 20
	for i := 0; i < c.Tasks; i += submitBatch {
		n := min(submitBatch, c.Tasks-i)
		batch := make([]wire.SubmitRequest, n)
		for j := range batch {
			span := c.HandlerMax - c.HandlerMin
			d := c.HandlerMin + time.Duration(rng.Int64N(int64(span)+1))
			p := taskParams{I: i + j, SleepS: float64(d.Milliseconds()) / 1000, FailFirst: rng.Float64() < c.FailFraction}
			if p.FailFirst {
				w.failing++
			}
			params, _ := json.Marshal(p)
			req := wire.SubmitRequest{Type: TaskType, Params: params, IdempotencyKey: fmt.Sprintf("chaos-%d-%d", c.Seed, i+j),
				MaxAttempts: &maxAttempts, MaxLost: &maxLost}
			if j > 0 && rng.Float64() < c.ChainFraction {
				req.DependsOn = []string{"#" + strconv.Itoa(j-1)}
				w.chained++
			}
			batch[j] = req
		}
		dep := -1
		if len(w.batches) > 0 && rng.Float64() < 0.5 {
			dep = rng.IntN(len(w.batches[len(w.batches)-1]))
			w.chained++
		}
		w.batches = append(w.batches, batch)
		w.crossDep = append(w.crossDep, dep)
	}
	return w
}

// submitted is what the harness knows of every task it submitted.
type submitted struct {
	// ids maps idempotency keys to the task ids the server returned.
	ids map[string]string
	// dedupBroken counts re-submits of a key that did not return the
	// first task (a new task, or a different id).
	dedupBroken int
	resubmitted int
}

// submit sends batch b (retrying through failures with the same keys: a
// batch that reached a replica that died before answering may have been
// stored, and the retry must get the same tasks back).
func (w *workload) submit(ctx context.Context, c *client.Client, b int, s *submitted, deadline time.Duration) error {
	reqs := w.batches[b]
	if dep := w.crossDep[b]; dep >= 0 {
		prev := s.ids[w.batches[b-1][dep].IdempotencyKey]
		reqs = append([]wire.SubmitRequest(nil), reqs...)
		reqs[0].DependsOn = append(reqs[0].DependsOn, prev)
	}
	var resps []wire.SubmitResponse
	err := poll(ctx, deadline, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		var err error
		resps, err = c.SubmitBatch(cctx, reqs)
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("submit batch %d: %w", b, err)
	}
	if len(resps) != len(reqs) {
		return fmt.Errorf("submit batch %d: %d answers for %d tasks", b, len(resps), len(reqs))
	}
	for i, r := range resps {
		key := reqs[i].IdempotencyKey
		id := r.Task.ID.String()
		if old, ok := s.ids[key]; ok {
			s.resubmitted++
			if old != id || !r.Existing {
				s.dedupBroken++
			}
			continue
		}
		s.ids[key] = id
	}
	return nil
}

// markers is what the handlers left: per task id, per attempt.
type attemptMark struct {
	Worker  string
	Start   time.Time
	Failed  bool
	Done    bool
	Started bool
}

func readMarkers(dir string) (map[string]map[int]*attemptMark, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read markers: %w", err)
	}
	out := map[string]map[int]*attemptMark{}
	for _, e := range ents {
		parts := strings.Split(e.Name(), ".")
		if len(parts) != 3 {
			continue
		}
		a, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		byA := out[parts[0]]
		if byA == nil {
			byA = map[int]*attemptMark{}
			out[parts[0]] = byA
		}
		m := byA[a]
		if m == nil {
			m = &attemptMark{}
			byA[a] = m
		}
		switch parts[2] {
		case "start":
			m.Started = true
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				m.Worker = strings.TrimSpace(string(b))
			}
			if fi, err := e.Info(); err == nil {
				m.Start = fi.ModTime()
			}
		case "fail":
			m.Failed = true
		case "done":
			m.Done = true
		}
	}
	return out, nil
}

// countDone counts the .done markers (a cheap progress figure).
func countDone(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".done") {
			n++
		}
	}
	return n
}
