// Package postgres is the PostgreSQL implementation of store.Store, for
// production and for more than one `drover serve` replica.
//
// Claims use River's pattern: a CTE picks queued rows ORDER BY priority DESC,
// created_at, id ... FOR UPDATE SKIP LOCKED and an outer UPDATE turns them
// into running rows with a fresh lease token, so concurrent claimers never
// block on each other's rows and never claim a task twice. The worker row is
// locked FOR SHARE in the same statement, so a concurrent drain (an UPDATE of
// the worker row) and a claim serialise.
//
// Per-owner limits are exact under concurrency: a claim with an owner limit
// locks the owners' rows (sorted, FOR UPDATE), then counts their running
// tasks in a new statement (READ COMMITTED sees the previous holder's
// commit) and grants at most limit-running per owner.
//
// Every time-dependent statement receives now from the caller's clock; the
// database clock is never used for decisions.
//
// Leader election is River's single-row lease table (INSERT ... ON CONFLICT
// ... DO UPDATE WHERE the row is ours or has expired).
//
// # Performance
//
// Batch operations are single statements over unnest($1::uuid[], ...)
// arrays, and the statements that join such arrays with tasks look rows up
// by id = ANY(...), so their plans never degrade into scans of the whole
// table. Sessions use plan_cache_mode=force_generic_plan: the CTEs cost
// more to plan than to run. Commits are synchronous. A deployment that
// accepts losing the last few hundred milliseconds of acknowledged claims
// and completions when the database server crashes (not when Drover
// crashes) can add synchronous_commit=off to the database URL; pgx passes
// unknown URL parameters to the server as session settings.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DefaultMaxConns is the pool size used when the URL does not set
// pool_max_conns. Claims are short statements; a few dozen connections keep
// a small server's cores busy without thrashing.
const DefaultMaxConns = 24

// migrationLockKey is the pg_advisory_lock key that serialises Migrate
// across replicas ("drover" in ASCII).
const migrationLockKey int64 = 0x64726f766572

// Store is the PostgreSQL store.
type Store struct {
	pool *pgxpool.Pool
	// lock is the leader's dedicated session (see leader.go).
	lock leaderLock
}

var _ store.Store = (*Store)(nil)

// IdleInTransactionTimeout is the idle_in_transaction_session_timeout
// every Drover connection sets unless the database URL gives one: below the
// default leader TTL (15 s), so a paused leader's locks are gone by the time
// its lease expires.
const IdleInTransactionTimeout = "10s"

// Open connects to the database at url (a postgres:// URL or key=value DSN;
// pgx pool options such as pool_max_conns are honoured). It does not
// migrate: call Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can echo the URL, password included.
		return nil, errors.New("open postgres: cannot parse the database URL")
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	// The claim and completion statements are CTEs whose planning costs
	// more than their execution; their plans do not depend on the
	// parameter values, so plan each prepared statement once per
	// connection instead of on every call.
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	// A replica paused (SIGSTOP, a VM freeze) in the middle of a
	// transaction keeps its row locks; a leader paused inside a fenced
	// write holds the leader row FOR SHARE, and no follower could take the
	// expired row until it woke up. PostgreSQL ends such a session after
	// this long idle in a transaction, which releases its locks (and its
	// advisory lock). No Drover transaction waits on its client that long.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = IdleInTransactionTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "drover"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: ping %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return &Store{pool: pool}, nil
}

// Pool returns the underlying connection pool (for tests and tools).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Backend returns "postgres".
func (s *Store) Backend() string { return "postgres" }

// Close releases all connections.
func (s *Store) Close() error {
	s.lock.mu.Lock()
	s.lock.drop()
	s.lock.mu.Unlock()
	s.pool.Close()
	return nil
}

// Migrate applies the embedded migrations that are not yet recorded in
// schema_migrations, each in its own transaction, in name order. A
// session-level advisory lock held on one connection keeps concurrent
// replicas from racing. It returns the names it applied.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate: list migrations: %w", err)
	}
	slices.Sort(names)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return nil, fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// Use a fresh context: ctx may be cancelled, and the lock must not
		// outlive this call on a pooled connection.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", migrationLockKey); err != nil {
			// The connection's state is unknown: drop it from the pool.
			_ = conn.Conn().Close(uctx)
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT name FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}

	var applied []string
	for _, path := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(path, "migrations/"), ".sql")
		if slices.Contains(done, name) {
			continue
		}
		body, err := migrationFS.ReadFile(path)
		if err != nil {
			return applied, fmt.Errorf("migrate: read %s: %w", name, err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: pgx uses the simple protocol, which accepts
			// several statements in one string.
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (name) VALUES ($1)", name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migrate: apply %s: %w", name, err)
		}
		applied = append(applied, name)
	}
	return applied, nil
}

// isUniqueViolation reports whether err is a unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// maxDeadlockRetries bounds how often a statement that PostgreSQL aborted
// to break a deadlock is run again.
const maxDeadlockRetries = 5

// retryDeadlock runs fn, a whole transaction or a single statement, again
// when PostgreSQL aborted it with deadlock_detected or
// serialization_failure: the attempt changed nothing, so running it again
// is safe. Such deadlocks are rare but possible even though every batch
// locks rows in id order: FOR UPDATE SKIP LOCKED still waits (without
// skipping) when it follows the update chain of a row that another
// transaction has locked, and an owner-limited claim waits for owner rows
// while holding task rows.
func retryDeadlock(ctx context.Context, fn func() error) error {
	var err error
	for range maxDeadlockRetries {
		err = fn()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
	}
	return err
}
