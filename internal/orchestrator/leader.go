package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
)

// Leader election defaults (after River's elector).
const (
	DefaultLeaderTTL      = 15 * time.Second
	DefaultLeaderInterval = 5 * time.Second
	// DefaultLeaderSafetyMargin is subtracted from the TTL to get the trust
	// window, so a slow renewal never stretches leadership past the
	// moment another replica may take over.
	DefaultLeaderSafetyMargin = 3 * time.Second
	// DefaultFollowerInterval is how often a follower tries to take over.
	// On PostgreSQL a dead leader's session ends at once and frees its
	// advisory lock, so a follower's next attempt wins: failover after a
	// crash takes at most this long plus one tick.
	DefaultFollowerInterval = time.Second
)

// ElectorConfig tunes an Elector. Zero fields take the defaults.
type ElectorConfig struct {
	// ID identifies this process (default: hostname-pid-random).
	ID string
	// TTL is how long a successful election holds in the database (15s).
	TTL time.Duration
	// Interval is how often Run re-elects (5s); it must be below TTL.
	Interval time.Duration
	// SafetyMargin shortens the trust window (3s, at most TTL/2).
	SafetyMargin time.Duration
	// FollowerInterval is how often Run attempts while not leader (1s, at
	// most Interval).
	FollowerInterval time.Duration
}

// Elector holds the leadership lease in the store. The process trusts its
// leadership only until attemptStart + TTL − SafetyMargin: attemptStart is
// read before the query, so any delay in the round trip shortens, never
// lengthens, the window. On SQLite there is one process, so it always wins,
// through the same code.
type Elector struct {
	st    store.Store
	clock core.Clock
	cfg   ElectorConfig
	log   *slog.Logger

	mu          sync.Mutex
	leader      bool
	trustedTill time.Time
	// row is the leadership row read after the last won election: its
	// term fences this process's leader-only writes.
	row store.Leader
}

// NewElector returns an elector over st.
func NewElector(st store.Store, clock core.Clock, cfg ElectorConfig, log *slog.Logger) *Elector {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLeaderTTL
	}
	if cfg.Interval <= 0 || cfg.Interval >= cfg.TTL {
		cfg.Interval = min(DefaultLeaderInterval, cfg.TTL/3)
	}
	if cfg.SafetyMargin <= 0 {
		cfg.SafetyMargin = DefaultLeaderSafetyMargin
	}
	cfg.SafetyMargin = min(cfg.SafetyMargin, cfg.TTL/2)
	if cfg.FollowerInterval <= 0 {
		cfg.FollowerInterval = DefaultFollowerInterval
	}
	cfg.FollowerInterval = min(cfg.FollowerInterval, cfg.Interval)
	if cfg.ID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if log == nil {
		log = slog.Default()
	}
	return &Elector{st: st, clock: clock, cfg: cfg, log: log}
}

// ID returns this elector's leader id.
func (e *Elector) ID() string { return e.cfg.ID }

// Config returns the effective configuration.
func (e *Elector) Config() ElectorConfig { return e.cfg }

// Attempt tries to become (or stay) leader once and returns whether this
// process is leader now. On an error the previous trust window stands (it
// runs out by itself).
func (e *Elector) Attempt(ctx context.Context) (bool, error) {
	start := e.clock.Now()
	ok, err := e.st.LeaderAttemptElect(ctx, &store.LeaderElectParams{Now: start, LeaderID: e.cfg.ID, TTL: e.cfg.TTL})
	var row store.Leader
	if ok && err == nil {
		row, ok, err = e.readRow(ctx)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		return e.leaderLocked(e.clock.Now()), fmt.Errorf("leader election: %w", err)
	}
	if ok {
		e.trustedTill = start.Add(e.cfg.TTL - e.cfg.SafetyMargin)
		e.row = row
	} else {
		e.trustedTill = time.Time{}
	}
	e.leader = ok
	return ok, nil
}

// readRow reads the leadership row after a won election, for its term. A
// store without LeaderReader leads without fencing (term 0).
func (e *Elector) readRow(ctx context.Context) (store.Leader, bool, error) {
	lr, ok := e.st.(store.LeaderReader)
	if !ok {
		return store.Leader{LeaderID: e.cfg.ID}, true, nil
	}
	l, err := lr.LeaderGet(ctx)
	if err != nil {
		return store.Leader{}, false, err
	}
	// Another replica may have taken over between the two statements.
	return *l, l.LeaderID == e.cfg.ID, nil
}

// Fence returns the fence of the last term this process won, and false
// when it never won one. Leader-only writes carry it (store.WithFence).
// It does not consult the trust window: a process paused after deciding
// to tick must still be fenced by the database, which knows the current
// term.
func (e *Elector) Fence() (store.Fence, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.row.Term == 0 {
		return store.Fence{}, false
	}
	return store.Fence{LeaderID: e.cfg.ID, Term: e.row.Term}, true
}

// Row returns the leadership row of the last won election (zero when this
// process never led).
func (e *Elector) Row() store.Leader {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.row
}

// Deposed ends the trust window at once: a leader-only write was fenced,
// so another replica leads now. The next attempt finds out the rest.
func (e *Elector) Deposed() {
	e.mu.Lock()
	e.leader, e.trustedTill = false, time.Time{}
	e.mu.Unlock()
}

// IsLeader reports whether this process may act as leader now.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leaderLocked(e.clock.Now())
}

// TrustedUntil returns the end of the current trust window (zero if not
// leader).
func (e *Elector) TrustedUntil() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.trustedTill
}

func (e *Elector) leaderLocked(now time.Time) bool {
	return e.leader && now.Before(e.trustedTill)
}

// Resign gives leadership up (only this process's term).
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	e.leader, e.trustedTill = false, time.Time{}
	e.mu.Unlock()
	if err := e.st.LeaderResign(ctx, e.cfg.ID); err != nil {
		return fmt.Errorf("leader resign: %w", err)
	}
	return nil
}

// Run re-elects every Interval until ctx is cancelled, calling onChange
// when leadership is gained or lost, then resigns.
func (e *Elector) Run(ctx context.Context, onChange func(leader bool)) {
	was := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := e.Resign(rctx); err != nil {
				e.log.Warn("resign leadership", "err", err)
			}
			cancel()
			if was && onChange != nil {
				onChange(false)
			}
			return
		case <-timer.C:
		}
		if _, err := e.Attempt(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("leader election attempt failed", "err", err)
		}
		now := e.IsLeader()
		if now != was {
			e.log.Info("leadership changed", "leader", now, "id", e.cfg.ID, "term", e.Row().Term)
			if onChange != nil {
				onChange(now)
			}
			was = now
		}
		if now {
			timer.Reset(e.cfg.Interval)
		} else {
			timer.Reset(e.cfg.FollowerInterval)
		}
	}
}
