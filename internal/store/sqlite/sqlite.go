// Package sqlite is the embedded store.Store backend: one database file in
// WAL mode behind a single connection, using the pure Go modernc.org/sqlite
// driver. It is the default backend and what `drover demo` uses; one
// `drover serve` process owns the file.
//
// Because every statement goes through one connection and every
// transaction starts with BEGIN IMMEDIATE, SQLite is the single writer: a
// claim's owner-limit count and its UPDATE see the same snapshot, so the
// limit holds exactly under any number of concurrent callers.
//
// Read-only methods (TaskDemand, WorkerList, TaskList, TaskGet, EventList,
// LogList, counts, breakers, KV reads) run on a second, query-only pool of
// connections: in WAL mode readers see the last committed state and never
// block the writer, so the control loop's reads do not hold up claims,
// heartbeats or completions.
//
// Times are stored as INTEGER unix microseconds (UTC), ids and lease tokens
// as canonical UUID text, JSON as TEXT.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is the SQLite implementation of store.Store.
type Store struct {
	db *sql.DB
	// rdb is the read-only pool (query_only, deferred transactions).
	rdb *sql.DB
	// stmts holds the prepared hot-path statements once the schema exists;
	// it is replaced as a whole, never mutated.
	stmts atomic.Pointer[map[string]*sql.Stmt]
	// multiRow holds the prepared full-size multi-row inserts by SQL text.
	multiRow sync.Map
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path. It does not
// migrate; call Migrate. path must be a file name (":memory:" is not
// supported: each connection would see its own database).
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite: path must be a plain file name, got %q", path)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	rq := url.Values{}
	for _, p := range q["_pragma"] {
		rq.Add("_pragma", p)
	}
	rq.Add("_pragma", "query_only(1)")
	// 64 MiB of page cache per reader (the default is 2 MiB): the tick
	// reads the whole fleet and the running set every pass.
	rq.Add("_pragma", "cache_size(-65536)")
	rq.Set("_txlock", "deferred")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// The writer has created the file and switched it to WAL; readers open
	// after it.
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite %s: readers: %w", path, err)
	}
	rdb.SetMaxOpenConns(readConns)
	rdb.SetMaxIdleConns(readConns)
	if err := rdb.PingContext(ctx); err != nil {
		_ = rdb.Close()
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite %s: readers: %w", path, err)
	}
	s := &Store{db: db, rdb: rdb}
	// An already migrated database gets its hot-path statements prepared
	// now; a fresh one after Migrate. Failure here only means "not yet".
	_ = s.prepare(ctx)
	return s, nil
}

// Backend returns "sqlite".
func (s *Store) Backend() string { return "sqlite" }

// Close closes the database.
func (s *Store) Close() error {
	if m := s.stmts.Swap(nil); m != nil {
		for _, st := range *m {
			_ = st.Close()
		}
	}
	s.multiRow.Range(func(_, v any) bool {
		_ = v.(*sql.Stmt).Close()
		return true
	})
	rerr := s.rdb.Close()
	if err := s.db.Close(); err != nil {
		return err
	}
	return rerr
}

// readConns bounds the read-only pool.
const readConns = 4

// inReadTx runs fn in one read-only (deferred) transaction on the reader
// pool: one consistent snapshot that never blocks the writer.
func (s *Store) inReadTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%s: begin: %w", what, err)
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// DB exposes the underlying handle for tests and tools in this module.
func (s *Store) DB() *sql.DB { return s.db }

// Migrate applies the embedded migrations that are not yet recorded in
// schema_migrations, each in its own transaction, in name order. It returns
// the names applied (none when the schema is current). After migrating it
// prepares the hot-path statements.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name TEXT NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate: list migrations: %w", err)
	}
	slices.Sort(names)
	var applied []string
	for _, path := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(path, "migrations/"), ".sql")
		body, err := migrationFS.ReadFile(path)
		if err != nil {
			return applied, fmt.Errorf("migrate: read %s: %w", name, err)
		}
		done, err := s.applyMigration(ctx, name, string(body))
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, name)
		}
	}
	if err := s.prepare(ctx); err != nil {
		return applied, err
	}
	return applied, nil
}

func (s *Store) applyMigration(ctx context.Context, name, body string) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate %s: begin: %w", name, err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return false, fmt.Errorf("migrate %s: check: %w", name, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return false, fmt.Errorf("migrate %s: %w", name, err)
	}
	// applied_at is bookkeeping, not domain time: SQLite's own clock is used.
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at)
		VALUES (?, CAST(strftime('%s', 'now') AS INTEGER) * 1000000)`, name); err != nil {
		return false, fmt.Errorf("migrate %s: record: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate %s: commit: %w", name, err)
	}
	return true, nil
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in one BEGIN IMMEDIATE transaction and commits when fn
// returns nil.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", what, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", what, err)
	}
	return nil
}

// stmt returns the prepared statement named name bound to tx, or nil when
// statements are not prepared yet (then callers run the SQL text).
func (s *Store) stmt(ctx context.Context, tx *sql.Tx, name string) *sql.Stmt {
	m := s.stmts.Load()
	if m == nil {
		return nil
	}
	return tx.StmtContext(ctx, (*m)[name])
}

// hot-path statements, prepared once after Migrate.
var preparedSQL = map[string]string{
	"complete": `UPDATE tasks SET state = 'succeeded', result = ?, error = '', finished_at = ?, updated_at = ?,
		lease_token = NULL, lease_expires_at = NULL
		WHERE id = ? AND lease_token = ? AND worker_id = ? AND state = 'running'`,
	"workerDone": `UPDATE workers SET tasks_done = tasks_done + ?, last_task_at = ? WHERE id = ?`,
	"renew": `UPDATE tasks SET lease_expires_at = ?
		WHERE id = ? AND lease_token = ? AND worker_id = ? AND state = 'running'`,
	"workerState": `SELECT state FROM workers WHERE id = ?`,
	"claim": `UPDATE tasks SET state = 'running', attempt = attempt + 1, worker_id = ?, lease_token = ` + newTokenSQL + `,
		lease_expires_at = ?, started_at = ?, updated_at = ?, progress = NULL, progress_msg = ''
		WHERE id IN (SELECT id FROM tasks WHERE state = 'queued' AND pool = ? AND run_after <= ? AND deps_pending = 0
			ORDER BY priority DESC, created_at, id LIMIT ?)
		RETURNING ` + taskCols,
	"heartbeat": `UPDATE workers SET last_heartbeat_at = ?, metrics = coalesce(?, metrics) WHERE id = ?`,
}

func (s *Store) prepare(ctx context.Context) error {
	if s.stmts.Load() != nil {
		return nil
	}
	m := make(map[string]*sql.Stmt, len(preparedSQL))
	for name, q := range preparedSQL {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			for _, p := range m {
				_ = p.Close()
			}
			return fmt.Errorf("prepare %s: %w", name, err)
		}
		m[name] = st
	}
	for head, width := range multiRowHeads {
		q := multiRowSQL(head, width)
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			for _, p := range m {
				_ = p.Close()
			}
			return fmt.Errorf("prepare multi-row insert: %w", err)
		}
		if _, loaded := s.multiRow.LoadOrStore(q, st); loaded {
			_ = st.Close()
		}
	}
	if !s.stmts.CompareAndSwap(nil, &m) {
		for _, p := range m {
			_ = p.Close()
		}
	}
	return nil
}

// execNamed runs a hot-path statement (prepared when available).
func (s *Store) execNamed(ctx context.Context, tx *sql.Tx, name string, args ...any) (sql.Result, error) {
	if st := s.stmt(ctx, tx, name); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, preparedSQL[name], args...)
}

func (s *Store) queryNamed(ctx context.Context, tx *sql.Tx, name string, args ...any) (*sql.Rows, error) {
	if st := s.stmt(ctx, tx, name); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, preparedSQL[name], args...)
}

// newTokenSQL yields a random version-4 UUID as text, evaluated per row.
const newTokenSQL = `(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
	substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) ||
	substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))`

// --- encoding helpers ---

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func ptrTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func truncTime(t time.Time) time.Time { return fromMicros(micros(t)) }

func nullUUID(id *uuid.UUID) any {
	if id == nil {
		return nil
	}
	return id.String()
}

func parseNullUUID(v sql.NullString) (*uuid.UUID, error) {
	if !v.Valid {
		return nil, nil
	}
	id, err := uuid.Parse(v.String)
	if err != nil {
		return nil, fmt.Errorf("parse uuid %q: %w", v.String, err)
	}
	return &id, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullJSON(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// placeholders returns "?, ?, ?" for n arguments.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

func uuidArgs(ids []uuid.UUID) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// chunkSize bounds the number of bound variables per IN list.
const chunkSize = 500

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
