package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// MaxSubmitBatch is the most tasks one Submit call accepts.
const MaxSubmitBatch = 1000

// MinTaskTimeout is the shortest per-attempt timeout a task may ask for.
const MinTaskTimeout = time.Second

// Name patterns of the submit contract. They are anchored and bounded so a
// name can go into a URL path, a log line or a metric label unescaped.
var (
	typeRe        = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	ownerRe       = regexp.MustCompile(`^[A-Za-z0-9_.@:-]{1,128}$`)
	poolRe        = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	idempotencyRe = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,255}$`)
)

// commas formats n with thousands separators: 1200000 → "1,200,000".
func commas(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// checkJSONObject validates a params or result document: at most limit
// bytes (ETOOLARGE) and a JSON object (EINVALID). Empty or null becomes {}.
func checkJSONObject(field string, doc json.RawMessage, limit int) (json.RawMessage, error) {
	if len(doc) > limit {
		return nil, &core.Error{Code: core.ETOOLARGE, Field: field,
			Message: fmt.Sprintf("is %s bytes; the limit is %s (%d MiB)", commas(len(doc)), commas(limit), limit>>20)}
	}
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return json.RawMessage("{}"), nil
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, core.Invalid(field, "must be a JSON object")
	}
	return json.RawMessage(trimmed), nil
}

// depRef is one resolved depends_on entry: an existing task id, or the
// index of an earlier task in the same batch.
type depRef struct {
	id    uuid.UUID
	batch int // -1 when id is set
}

// extDep is a dependency on an existing task, with the field that named it
// first.
type extDep struct {
	id    uuid.UUID
	field string
}

// prepare validates every request and returns fully defaulted tasks (ids,
// times and batch-internal dependencies resolved) plus the external
// dependency ids with the field that named each. It writes nothing.
func (s *Service) prepare(reqs []SubmitRequest) ([]*core.Task, []extDep, error) {
	if len(reqs) == 0 {
		return nil, nil, core.Invalid("tasks", "is empty; submit at least one task")
	}
	if len(reqs) > MaxSubmitBatch {
		return nil, nil, core.Invalid("tasks", "has %s tasks; the limit is %s per request",
			commas(len(reqs)), commas(MaxSubmitBatch))
	}
	now := s.clock.Now()
	tasks := make([]*core.Task, len(reqs))
	var external []extDep
	seen := map[uuid.UUID]bool{}
	for i := range reqs {
		prefix := ""
		if len(reqs) > 1 {
			prefix = fmt.Sprintf("tasks[%d].", i)
		}
		t, deps, err := s.prepareOne(&reqs[i], i, prefix, now)
		if err != nil {
			return nil, nil, err
		}
		tasks[i] = t
		for j, d := range deps {
			if d.batch >= 0 {
				t.DependsOn = append(t.DependsOn, tasks[d.batch].ID)
				continue
			}
			t.DependsOn = append(t.DependsOn, d.id)
			if !seen[d.id] {
				seen[d.id] = true
				external = append(external, extDep{id: d.id, field: fmt.Sprintf("%sdepends_on[%d]", prefix, j)})
			}
		}
	}
	return tasks, external, nil
}

// prepareOne validates request i and applies the defaults.
func (s *Service) prepareOne(r *SubmitRequest, i int, prefix string, now time.Time) (*core.Task, []depRef, error) {
	f := func(name string) string { return prefix + name }

	if r.Type == "" {
		return nil, nil, core.Invalid(f("type"), "is required")
	}
	if !typeRe.MatchString(r.Type) {
		return nil, nil, core.Invalid(f("type"), "must be 1-%d characters of A-Z a-z 0-9 _ . : -", core.MaxTypeLen)
	}
	params, err := checkJSONObject(f("params"), r.Params, core.MaxParamsBytes)
	if err != nil {
		return nil, nil, err
	}
	owner := r.Owner
	if owner == "" {
		owner = core.DefaultOwner
	}
	if !ownerRe.MatchString(owner) {
		return nil, nil, core.Invalid(f("owner"), "must be 1-%d characters of A-Z a-z 0-9 _ . @ : -", core.MaxOwnerLen)
	}
	priority := 0
	if r.Priority != nil {
		priority = *r.Priority
		if priority < core.MinPriority || priority > core.MaxPriority {
			return nil, nil, core.Invalid(f("priority"), "must be between %d and %d", core.MinPriority, core.MaxPriority)
		}
	}
	pool := r.Pool
	if pool == "" {
		pool = s.cfg.TypePools[r.Type]
	}
	if pool == "" {
		pool = core.DefaultPool
	}
	if !poolRe.MatchString(pool) {
		return nil, nil, core.Invalid(f("pool"), "must be 1-%d characters of a-z 0-9 _ -", core.MaxPoolLen)
	}
	if s.cfg.Pools != nil && !slices.Contains(s.cfg.Pools, pool) {
		// A task for a pool that does not exist would wait for a worker
		// that never comes, until the queue TTL.
		from := ""
		if r.Pool == "" {
			from = " (the default for a task without a pool)"
		}
		return nil, nil, core.Invalid(f("pool"), "%q%s is not a pool of this server; known pools: %s",
			pool, from, strings.Join(s.cfg.Pools, ", "))
	}
	maxAttempts := s.cfg.MaxAttempts
	if r.MaxAttempts != nil {
		maxAttempts = *r.MaxAttempts
		if maxAttempts < 1 || maxAttempts > core.MaxMaxAttempts {
			return nil, nil, core.Invalid(f("max_attempts"), "must be between 1 and %d", core.MaxMaxAttempts)
		}
	}
	maxLost := s.cfg.MaxLost
	if r.MaxLost != nil {
		maxLost = *r.MaxLost
		if maxLost < 1 || maxLost > core.MaxMaxLost {
			return nil, nil, core.Invalid(f("max_lost"), "must be between 1 and %d", core.MaxMaxLost)
		}
	}
	timeout := s.cfg.DefaultTimeout
	if d, ok := s.cfg.TypeTimeouts[r.Type]; ok && d > 0 {
		timeout = d
	}
	if r.Timeout != nil {
		timeout = *r.Timeout
		if timeout < MinTaskTimeout || timeout > core.MaxTaskTimeout {
			return nil, nil, core.Invalid(f("timeout"), "is %s; it must be between 1s and 168h (7 days)", timeout)
		}
	}
	if r.IdempotencyKey != "" && !idempotencyRe.MatchString(r.IdempotencyKey) {
		return nil, nil, core.Invalid(f("idempotency_key"), "must be 1-%d characters of A-Z a-z 0-9 _ . : / -", core.MaxIdempotencyKeyLen)
	}
	deps, err := parseDeps(r.DependsOn, i, f("depends_on"))
	if err != nil {
		return nil, nil, err
	}

	id, err := uuid.NewV7() // time-ordered: new rows land at the end of the index
	if err != nil {
		id = uuid.New()
	}
	return &core.Task{
		ID:             id,
		Type:           r.Type,
		Params:         params,
		Owner:          owner,
		Priority:       priority,
		Pool:           pool,
		MaxAttempts:    maxAttempts,
		MaxLost:        maxLost,
		Timeout:        timeout,
		IdempotencyKey: r.IdempotencyKey,
		State:          core.TaskQueued,
		DepsPending:    len(deps),
		CreatedAt:      now,
		RunAfter:       now,
		UpdatedAt:      now,
	}, deps, nil
}

// parseDeps checks the depends_on list of batch item i.
func parseDeps(raw []string, i int, field string) ([]depRef, error) {
	if len(raw) > core.MaxDependsOn {
		return nil, core.Invalid(field, "has %d entries; the limit is %d", len(raw), core.MaxDependsOn)
	}
	deps := make([]depRef, 0, len(raw))
	seen := make(map[string]int, len(raw))
	for j, s := range raw {
		fj := fmt.Sprintf("%s[%d]", field, j)
		var d depRef
		if n, ok := strings.CutPrefix(s, "#"); ok {
			k, err := strconv.Atoi(n)
			switch {
			case err != nil || k < 0:
				return nil, core.Invalid(fj, "%q is not a task id or #N (N = index of an earlier task in this batch)", s)
			case k == i:
				return nil, core.Invalid(field, "cycle: task depends on itself (%s)", s)
			case k > i && i == 0:
				return nil, core.Invalid(fj, "%s names a later task of the batch; the first task (#0) can depend only on existing tasks, by id", s)
			case k > i && i == 1:
				return nil, core.Invalid(fj, "%s names a later task of the batch; only the earlier task #0 can be named", s)
			case k > i:
				return nil, core.Invalid(fj, "%s names a later task of the batch; only earlier tasks (#0 to #%d) can be named", s, i-1)
			}
			d = depRef{batch: k}
		} else {
			id, err := uuid.Parse(s)
			if err != nil {
				return nil, core.Invalid(fj, "%q is not a task id or #N (N = index of an earlier task in this batch)", s)
			}
			d = depRef{id: id, batch: -1}
		}
		key := d.id.String()
		if d.batch >= 0 {
			key = "#" + strconv.Itoa(d.batch)
		}
		if prev, dup := seen[key]; dup {
			return nil, core.Invalid(fj, "duplicate of %s[%d]", field, prev)
		}
		seen[key] = j
		deps = append(deps, d)
	}
	return deps, nil
}
