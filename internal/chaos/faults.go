package chaos

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// sampleStats is what the once-a-second sampler saw.
type sampleStats struct {
	// PeakAgents is the most agent processes alive at once.
	PeakAgents int
	// Excess holds workers that were live (in the database) while max
	// others already were: two workers for one demand.
	Excess map[string]bool
	// DupProcs holds worker ids with two agent processes at once.
	DupProcs map[string]bool
	// PeakStray is the most agent processes alive at once whose worker
	// was no longer live (failed or terminated but still running).
	PeakStray int

	excessNotes int
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// sample watches the deployment's processes and live workers once a second.
func (r *run) sample(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		byWorker := map[string]int{}
		for _, p := range clusterProcs(r.cluster) {
			if p.Agent && p.Worker != "" {
				byWorker[p.Worker]++
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ws, err := r.c.Workers(cctx, wire.WorkerFilter{Live: true, Limit: 10000})
		cancel()
		r.mu.Lock()
		s := &r.samples
		if s.Excess == nil {
			s.Excess, s.DupProcs = map[string]bool{}, map[string]bool{}
		}
		s.PeakAgents = max(s.PeakAgents, len(byWorker))
		for w, n := range byWorker {
			if n > 1 {
				s.DupProcs[w] = true
			}
		}
		if err == nil {
			// The list's "live" includes terminating workers (their
			// instance is being deleted); the pool's size does not.
			ws = slices.DeleteFunc(ws, func(w *wire.Worker) bool { return !w.State.Live() })
			live := map[string]bool{}
			for _, w := range ws {
				live[w.ID.String()] = true
			}
			if len(ws) > r.cfg.Agents {
				slices.SortFunc(ws, func(a, b *wire.Worker) int { return a.CreatedAt.Compare(b.CreatedAt) })
				states := map[core.WorkerState]int{}
				for _, w := range ws {
					states[w.State]++
				}
				for _, w := range ws[r.cfg.Agents:] {
					s.Excess[w.ID.String()] = true
				}
				if s.excessNotes < 5 {
					s.excessNotes++
					r.notes = append(r.notes, fmt.Sprintf("%s: %d live workers for a pool of max %d (by state: %v)",
						time.Now().UTC().Format("15:04:05.000"), len(ws), r.cfg.Agents, states))
				}
			}
			stray := 0
			for w := range byWorker {
				if !live[w] {
					stray++
				}
			}
			s.PeakStray = max(s.PeakStray, stray)
		}
		r.mu.Unlock()
		if len(byWorker) >= r.cfg.Agents {
			r.calmStart.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
}

// killAgents SIGKILLs a random agent every AgentKillEvery (±50 %).
func (r *run) killAgents(ctx context.Context, rng *rand.Rand) {
	for {
		gap := time.Duration(float64(r.cfg.AgentKillEvery) * (0.5 + rng.Float64()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		var agents []proc
		for _, p := range clusterProcs(r.cluster) {
			if p.Agent && p.Worker != "" {
				agents = append(agents, p)
			}
		}
		if len(agents) == 0 {
			continue
		}
		slices.SortFunc(agents, func(a, b proc) int { return a.PID - b.PID })
		p := agents[rng.IntN(len(agents))]
		at := time.Now()
		if killPID(p.PID) != nil {
			continue
		}
		r.mu.Lock()
		r.kills = append(r.kills, agentKill{At: at, Worker: p.Worker, PID: p.PID})
		r.mu.Unlock()
	}
}

// fault kinds, in the order majorFaults interleaves them.
const (
	faultLeaderKill = "leader SIGKILL"
	faultPause      = "replica SIGSTOP past the lease"
	faultPGRestart  = "PostgreSQL restart"
)

func faultOrder(c *Config) []string {
	left := map[string]int{faultLeaderKill: c.LeaderKills, faultPause: c.Pauses, faultPGRestart: c.PGRestarts}
	var out []string
	for left[faultLeaderKill]+left[faultPause]+left[faultPGRestart] > 0 {
		for _, k := range []string{faultLeaderKill, faultPause, faultLeaderKill, faultPGRestart} {
			if left[k] > 0 {
				out = append(out, k)
				left[k]--
			}
		}
	}
	return out
}

// majorFaults injects the leader kills, pauses and PostgreSQL restarts,
// spread over est (the chaos phase's expected length) and at least 3 s
// apart. A fault that has started completes even when ctx ends (the
// replica it stopped must come back); the ones still due are skipped.
func (r *run) majorFaults(ctx context.Context, est time.Duration, wl *workload, sub *submitted) {
	order := faultOrder(r.cfg)
	gap := max(3*time.Second, time.Duration(float64(est)*0.8/float64(len(order)+1)))
	begin := time.Now()
	resubmitted := make(chan struct{})
	resubmitting := false
	for i, f := range order {
		select {
		case <-ctx.Done():
			r.note("%d faults not injected: the tasks were done first (%v)", len(order)-i, order[i:])
			if resubmitting {
				<-resubmitted
			}
			return
		case <-time.After(time.Until(begin.Add(gap * time.Duration(i+1)))):
		}
		fctx := context.WithoutCancel(ctx)
		switch f {
		case faultLeaderKill:
			killed := r.leaderKill(fctx)
			if killed && !resubmitting {
				// Idempotency under failover: re-submit the last batch
				// while the leader is down.
				resubmitting = true
				go func() {
					defer close(resubmitted)
					if err := wl.submit(fctx, r.c, len(wl.batches)-1, sub, 5*time.Minute); err != nil {
						r.note("re-submit during failover: %v", err)
					}
				}()
			}
		case faultPause:
			r.pause(fctx)
		case faultPGRestart:
			r.pgRestart(fctx)
		}
	}
	if resubmitting {
		<-resubmitted
	}
}

func (r *run) leaderTTL() time.Duration {
	if r.cfg.LeaderTTL > 0 {
		return r.cfg.LeaderTTL
	}
	return config.DefaultLeaderTTL
}

// liveLeader waits for a leader row held by a running replica.
func (r *run) liveLeader(ctx context.Context) (*store.Leader, *replica, error) {
	var (
		l   *store.Leader
		rep *replica
	)
	err := poll(ctx, 2*r.leaderTTL()+30*time.Second, func() bool {
		l, rep = r.fleet.leaderOf(ctx, r.st)
		return rep != nil && l.ExpiresAt.After(time.Now())
	})
	if err != nil {
		return nil, nil, errNoLeader
	}
	return l, rep, nil
}

// newLeader waits until a running replica other than old holds a newer term.
func (r *run) newLeader(ctx context.Context, old *store.Leader, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	err := poll(ctx, timeout, func() bool {
		l, rep := r.fleet.leaderOf(ctx, r.st)
		return rep != nil && l.Term > old.Term
	})
	return time.Since(t0), err
}

// leaderKill SIGKILLs the leader, measures the time until another replica
// leads and restarts the killed one. It reports whether it killed.
func (r *run) leaderKill(ctx context.Context) bool {
	l, rep, err := r.liveLeader(ctx)
	if err != nil {
		r.note("leader SIGKILL skipped: %v", err)
		return false
	}
	t0 := time.Now()
	rep.kill()
	_, err = r.newLeader(ctx, l, 3*r.leaderTTL()+30*time.Second)
	d := time.Since(t0)
	r.mu.Lock()
	r.failovers = append(r.failovers, d)
	r.mu.Unlock()
	if err != nil {
		r.note("no new leader %s after SIGKILL of replica %d", d.Round(time.Millisecond), rep.idx)
	} else {
		r.logf("SIGKILL leader replica %d (term %d): another replica leads after %s", rep.idx, l.Term, d.Round(time.Millisecond))
	}
	if err := r.fleet.start(rep); err != nil {
		r.note("restart replica %d: %v", rep.idx, err)
		return true
	}
	if err := r.fleet.waitReady(ctx, rep, 2*time.Minute); err != nil {
		r.note("%v", err)
	}
	return true
}

// pause SIGSTOPs the leader until another replica has led for a while and
// its lease is long past, then SIGCONTs it.
func (r *run) pause(ctx context.Context) {
	l, rep, err := r.liveLeader(ctx)
	if err != nil {
		r.note("replica SIGSTOP skipped: %v", err)
		return
	}
	ttl := r.leaderTTL()
	t0 := time.Now()
	if err := rep.signal(syscall.SIGSTOP); err != nil {
		r.note("SIGSTOP replica %d: %v", rep.idx, err)
		return
	}
	takeover, err := r.newLeader(ctx, l, 3*ttl+30*time.Second)
	if err != nil {
		r.note("no takeover %s after SIGSTOP of the leader (replica %d)", takeover.Round(time.Millisecond), rep.idx)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t0.Add(ttl + 3*time.Second))):
	}
	_ = rep.signal(syscall.SIGCONT)
	paused := time.Since(t0)
	rec := pauseRecord{Takeover: takeover, Paused: paused, Fenced: -1, NoTakeover: err != nil}
	if err := r.fleet.waitReady(ctx, rep, 2*time.Minute); err != nil {
		r.note("%v", err)
	} else {
		time.Sleep(2 * time.Second) // let its loop run once before reading the counter
		rec.Fenced = r.fencedWrites(ctx, rep)
	}
	r.mu.Lock()
	r.pauses = append(r.pauses, rec)
	r.mu.Unlock()
	r.logf("SIGSTOP leader replica %d (term %d) for %s: takeover after %s; fenced writes after resume: %g", rep.idx, l.Term, paused.Round(time.Millisecond), takeover.Round(time.Millisecond), rec.Fenced)
}

// fencedWrites reads drover_leader_fenced_writes_total from a replica's
// /metrics (-1 when it cannot).
func (r *run) fencedWrites(ctx context.Context, rep *replica) float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+rep.addr+"/metrics", nil)
	if err != nil {
		return -1
	}
	req.Header.Set("Authorization", "Bearer "+r.fleet.token)
	resp, err := r.fleet.hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	total, seen := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "drover_leader_fenced_writes_total") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			total, seen = total+v, true
		}
	}
	if !seen {
		return 0
	}
	return total
}

// pgRestart runs the restart command and measures the time until every
// replica is ready again.
func (r *run) pgRestart(ctx context.Context) {
	if r.restart == "" {
		return
	}
	t0 := time.Now()
	if err := r.runRestart(ctx); err != nil {
		r.note("%v", err)
		return
	}
	err := poll(ctx, 2*time.Minute, func() bool {
		for _, rep := range r.fleet.replicas {
			if !r.fleet.ready(ctx, rep) {
				return false
			}
		}
		_, _, lerr := r.liveLeaderNow(ctx)
		return lerr == nil
	})
	d := time.Since(t0)
	if err != nil {
		r.note("replicas not all ready with a leader %s after the PostgreSQL restart", d.Round(time.Millisecond))
	}
	r.mu.Lock()
	r.pgDowns = append(r.pgDowns, d)
	r.mu.Unlock()
	r.logf("PostgreSQL restarted: every replica ready, a live leader, after %s", d.Round(time.Millisecond))
}

// runRestart runs the restart command with its output in a file: a pipe
// would keep the command "running" as long as the server it started
// inherits it.
func (r *run) runRestart(ctx context.Context) error {
	outPath := filepath.Join(r.dir, "pg-restart.log")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("PostgreSQL restart: open its log: %w", err)
	}
	defer out.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "sh", "-c", r.restart)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(outPath)
		return fmt.Errorf("PostgreSQL restart command failed: %w: %s", err, lastLine(b))
	}
	return nil
}

func (r *run) liveLeaderNow(ctx context.Context) (*store.Leader, *replica, error) {
	l, rep := r.fleet.leaderOf(ctx, r.st)
	if rep == nil || !l.ExpiresAt.After(time.Now()) {
		return nil, nil, errNoLeader
	}
	return l, rep, nil
}

// evidence is what the run recorded, for analyze.
type evidence struct {
	tasks    []*wire.Task
	workers  []*wire.Worker
	requeues []*wire.Event
	marks    map[string]map[int]*attemptMark
	leaked   []proc

	kills     []agentKill
	failovers []time.Duration
	pauses    []pauseRecord
	pgDowns   []time.Duration
	samples   sampleStats
	notes     []string
	calmStart time.Time
	calmEnd   time.Time
	chaosEnd  time.Time
}

// collect reads the tasks, workers, requeue events and markers (before the
// replicas stop).
func (r *run) collect(ctx context.Context) (*evidence, error) {
	ev := &evidence{}
	err := poll(ctx, 2*time.Minute, func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var err error
		ev.tasks, err = r.allTasks(cctx)
		if err == nil {
			ev.workers, err = r.c.Workers(cctx, wire.WorkerFilter{Limit: 100000})
		}
		if err == nil {
			ev.requeues, err = r.allEvents(cctx, core.EventTaskRequeued)
		}
		if err != nil {
			r.logf("collect: %v (retrying)", err)
		}
		return err == nil
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: read the tasks, workers and events: %w", err)
	}
	if ev.marks, err = readMarkers(r.markers); err != nil {
		return nil, err
	}
	return ev, nil
}

func (r *run) allTasks(ctx context.Context) ([]*wire.Task, error) {
	var out []*wire.Task
	f := wire.TaskFilter{Type: TaskType, Limit: 1000}
	for {
		page, err := r.c.Tasks(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < f.Limit {
			return out, nil
		}
		f.Before = page[len(page)-1].ID.String()
	}
}

func (r *run) allEvents(ctx context.Context, kind core.EventKind) ([]*wire.Event, error) {
	var out []*wire.Event
	f := wire.EventFilter{Kinds: []string{string(kind)}, Limit: 10000}
	for {
		page, err := r.c.Events(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < f.Limit {
			return out, nil
		}
		f.BeforeID = page[len(page)-1].ID
	}
}

// fill copies what the run recorded into ev.
func (r *run) fill(ev *evidence, calmEnd, chaosEnd time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev.kills, ev.failovers, ev.pauses, ev.pgDowns = r.kills, r.failovers, r.pauses, r.pgDowns
	ev.samples, ev.notes = r.samples, r.notes
	if cs := r.calmStart.Load(); cs != 0 {
		ev.calmStart = time.Unix(0, cs)
	} else {
		ev.calmStart = r.start
	}
	ev.calmEnd, ev.chaosEnd = calmEnd, chaosEnd
}
