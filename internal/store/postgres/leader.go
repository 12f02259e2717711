package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// leaderLockSQL names the session advisory lock that accompanies the
// leader row. Its key is derived from the schema, so deployments (and
// tests) in different schemas of one database do not share it.
const leaderLockSQL = `hashtextextended('drover.leader.' || current_schema(), 0)`

// leaderLock is the dedicated connection on which this store holds the
// leader's session advisory lock. A process that dies loses its session at
// once, so the lock tells the other replicas immediately that the holder
// is gone; a paused or partitioned holder keeps its session and must be
// waited out through the row's TTL.
type leaderLock struct {
	mu   sync.Mutex
	conn *pgxpool.Conn
	held bool
	// owner is the leader id the lock is held for: one store normally
	// serves one elector, but when several ids elect through one store
	// (tests), the lock speaks only for its owner.
	owner string
}

// drop forgets the dedicated connection (after an error its state is
// unknown); the session, and with it the lock, ends.
func (l *leaderLock) drop() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = l.conn.Conn().Close(ctx)
		cancel()
		l.conn.Release()
	}
	l.conn, l.held, l.owner = nil, false, ""
}

// tryLock takes the advisory lock when this store does not hold it yet.
// fresh is true when it was acquired by this call: the previous holder's
// session has ended or it unlocked.
func (s *Store) tryLeaderLock(ctx context.Context, id string) (fresh bool, err error) {
	l := &s.lock
	if l.held && l.owner != id {
		return false, nil
	}
	if l.held {
		// Check that the session is still alive: a lost connection means a
		// lost lock.
		if _, err := l.conn.Exec(ctx, `SELECT 1`); err != nil {
			l.drop()
		} else {
			return false, nil
		}
	}
	if l.conn == nil {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			return false, fmt.Errorf("acquire leader lock connection: %w", err)
		}
		l.conn = c
	}
	var got bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+leaderLockSQL+`)`).Scan(&got); err != nil {
		l.drop()
		return false, fmt.Errorf("try leader lock: %w", err)
	}
	l.held = got
	if got {
		l.owner = id
	}
	return got, nil
}

// leaderLockRetries are the waits between the immediate retries of a
// leader that won the row without the lock. A follower holds the free lock
// for one attempt (a few round trips), so these cover it with room; a lock
// still held after them belongs to a session that keeps it — a paused or
// partitioned previous leader — and the row is led alone until the next
// renewal tries again (failover then waits for the TTL, which is what a
// paused leader costs anyway).
var leaderLockRetries = []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}

// leaderLockRetryHook, when set (tests only), runs before each retry.
var leaderLockRetryHook func(try int)

// retryLeaderLock is called with the row won and the lock not held. It
// retries the lock a few times and, once it holds it, marks the row
// locked so that a follower may take over the moment this session ends.
func (s *Store) retryLeaderLock(ctx context.Context, id string) bool {
	for i, wait := range leaderLockRetries {
		if leaderLockRetryHook != nil {
			leaderLockRetryHook(i)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		got, err := s.tryLeaderLock(ctx, id)
		if err != nil {
			return false
		}
		if !got {
			continue
		}
		tag, err := s.pool.Exec(ctx, `UPDATE leader SET locked = true WHERE name = 'default' AND leader_id = $1`, id)
		if err != nil || tag.RowsAffected() == 0 {
			// The row is gone from us (or unknown): the caller reports
			// the election as won by the row read earlier; the next
			// renewal sorts it out. Keep no lock we do not lead with.
			s.unlockLeader(ctx, id)
			return false
		}
		return true
	}
	return false
}

// unlockLeader releases the advisory lock if held.
func (s *Store) unlockLeader(ctx context.Context, id string) {
	l := &s.lock
	if !l.held || l.owner != id {
		return
	}
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock(`+leaderLockSQL+`)`); err != nil {
		l.drop()
		return
	}
	l.held, l.owner = false, ""
}

// LeaderAttemptElect tries to become (or stay) leader until Now+TTL. The
// single row is taken when it is absent, already ours, expired, or held by
// a replica whose session advisory lock this call has just acquired (that
// replica's database session ended: it died). Every change of holder
// increments the term.
func (s *Store) LeaderAttemptElect(ctx context.Context, params *store.LeaderElectParams) (bool, error) {
	if params.LeaderID == "" {
		return false, core.Invalid("leader_id", "must not be empty")
	}
	if params.TTL <= 0 {
		return false, core.Invalid("ttl", "must be positive, got %s", params.TTL)
	}
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	fresh, lockErr := s.tryLeaderLock(ctx, params.LeaderID)
	locked := s.lock.held && s.lock.owner == params.LeaderID
	var id string
	err := s.pool.QueryRow(ctx, `INSERT INTO leader (name, leader_id, elected_at, expires_at, term, locked)
		VALUES ('default', $1, $2, $3, 1, $4)
		ON CONFLICT (name) DO UPDATE SET
			term = CASE WHEN leader.leader_id = EXCLUDED.leader_id THEN leader.term ELSE leader.term + 1 END,
			previous_id = CASE WHEN leader.leader_id = EXCLUDED.leader_id THEN leader.previous_id ELSE leader.leader_id END,
			cause = CASE WHEN leader.leader_id = EXCLUDED.leader_id THEN leader.cause
				WHEN leader.expires_at = '-infinity' THEN 'resign' ELSE 'takeover' END,
			leader_id = EXCLUDED.leader_id,
			elected_at = CASE WHEN leader.leader_id = EXCLUDED.leader_id THEN leader.elected_at ELSE EXCLUDED.elected_at END,
			expires_at = EXCLUDED.expires_at,
			locked = EXCLUDED.locked
		WHERE leader.leader_id = EXCLUDED.leader_id OR leader.expires_at <= EXCLUDED.elected_at
			OR ($5 AND leader.locked)
		RETURNING leader_id`, params.LeaderID, params.Now, params.Now.Add(params.TTL), locked, fresh).Scan(&id)
	won := err == nil && id == params.LeaderID
	if won && !locked && lockErr == nil {
		// The row is ours but the lock is not: another replica held it
		// for the instant of its own attempt (a follower takes the free
		// lock, loses the row, and gives the lock back at once). Retry
		// now rather than at the next renewal, or a SIGKILL of this
		// leader before then could only be noticed through the TTL.
		s.retryLeaderLock(ctx, params.LeaderID)
	}
	if !won {
		// A follower never keeps the lock: the leader must be able to take it.
		s.unlockLeader(ctx, params.LeaderID)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("elect leader: %w", err)
	}
	if lockErr != nil && won {
		// Leading on the row alone works; failover just waits for the TTL.
		return true, nil
	}
	return won, nil
}

// LeaderResign gives up leadership if leaderID holds it: the row expires at
// once (the term is kept, so terms only grow) and the lock is released.
func (s *Store) LeaderResign(ctx context.Context, leaderID string) error {
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	_, err := s.pool.Exec(ctx, `UPDATE leader SET expires_at = '-infinity', locked = false WHERE leader_id = $1`, leaderID)
	s.unlockLeader(ctx, leaderID)
	if err != nil {
		return fmt.Errorf("resign leadership: %w", err)
	}
	return nil
}

// LeaderGet returns the leadership row; see store.LeaderReader.
func (s *Store) LeaderGet(ctx context.Context) (*store.Leader, error) {
	var l store.Leader
	err := s.pool.QueryRow(ctx, `SELECT leader_id, term, elected_at,
			CASE WHEN expires_at = '-infinity' THEN elected_at ELSE expires_at END, previous_id, cause
		FROM leader WHERE name = 'default'`).Scan(&l.LeaderID, &l.Term, &l.ElectedAt, &l.ExpiresAt, &l.PreviousID, &l.Cause)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get leader: %w", core.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get leader: %w", err)
	}
	return &l, nil
}

// checkFence verifies, inside tx, that the fence's term still holds; the
// row is locked FOR SHARE so that no takeover commits before tx does.
func checkFence(ctx context.Context, tx pgx.Tx, f store.Fence) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM leader WHERE name = 'default' AND leader_id = $1 AND term = $2 FOR SHARE`,
		f.LeaderID, f.Term).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (term %d of %s)", store.ErrFenced, f.Term, f.LeaderID)
	}
	if err != nil {
		return fmt.Errorf("check leadership term: %w", err)
	}
	return nil
}

// fenced runs fn on the pool, or, when ctx carries a fence, in a
// transaction that first checks the fence.
func (s *Store) fenced(ctx context.Context, fn func(q querier) error) error {
	f, ok := store.FenceFrom(ctx)
	if !ok {
		return fn(s.pool)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx, f); err != nil {
			return err
		}
		return fn(tx)
	})
}
