package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// insertTx is TaskInsertMany's transaction on one pooled connection. Its
// BEGIN and COMMIT ride on the round trips of other statements: BEGIN goes
// in front of the COPY, in the same query message (or, when lookups come
// first, is sent on its own), and COMMIT ends the batch that writes the
// dependencies, owners and callbacks. A bulk submit so takes two round
// trips instead of four. When an error leaves the transaction open,
// rollback ends it (or Release closes the connection).
type insertTx struct {
	conn  *pgxpool.Conn
	begun bool
}

// insertTasksTx runs insertTasks in an insertTx.
func (s *Store) insertTasksTx(ctx context.Context, params *store.TaskInsertManyParams) (res []store.TaskInsertResult, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire a connection: %w", err)
	}
	defer conn.Release()
	tx := &insertTx{conn: conn}
	defer func() {
		if err != nil {
			tx.rollback(ctx)
		}
	}()
	return s.insertTasks(ctx, tx, params)
}

// begin sends BEGIN unless the transaction is open.
func (tx *insertTx) begin(ctx context.Context) error {
	if tx.begun {
		return nil
	}
	if _, err := tx.conn.Exec(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx.begun = true
	return nil
}

// query runs a query in the transaction, opening it first if need be.
func (tx *insertTx) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := tx.begin(ctx); err != nil {
		return nil, err
	}
	return tx.conn.Query(ctx, sql, args...)
}

// commit runs batch and then COMMIT in one round trip. A transaction that
// failed answers COMMIT with ROLLBACK: that is an error too.
func (tx *insertTx) commit(ctx context.Context, batch *pgx.Batch) error {
	if err := tx.begin(ctx); err != nil {
		return err
	}
	n := batch.Len()
	batch.Queue("COMMIT")
	br := tx.conn.SendBatch(ctx, batch)
	for range n {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return err
		}
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: the transaction ended with %q", tag)
	}
	tx.begun = false
	return nil
}

// rollback ends a transaction an error left open. If it cannot, the
// connection is not idle and Release closes it.
func (tx *insertTx) rollback(ctx context.Context) {
	if tx.conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	_, _ = tx.conn.Exec(ctx, "ROLLBACK")
}

// copyTasks writes rows into tasks with one COPY … FROM STDIN in binary
// format, opening the transaction in the same message if need be, and
// returns how many were written.
//
// The stream is encoded here, straight from the tasks, instead of through
// pgx.Tx.CopyFrom: that one boxes every value of every row into an
// interface, looks up an encode plan for each, and hands the bytes to the
// connection through an io.Pipe and a second goroutine. Encoding the rows
// ourselves costs a fraction of that; the rows are encoded lazily, a chunk
// per Read, so the server inserts one chunk while the next is encoded.
func (tx *insertTx) copyTasks(ctx context.Context, rows []*core.Task) (int64, error) {
	sql := copyTasksSQL
	if !tx.begun {
		sql = "BEGIN; " + sql
		tx.begun = true // or failed, which rollback handles alike
	}
	tag, err := tx.conn.Conn().PgConn().CopyFrom(ctx, &taskCopyReader{rows: rows}, sql)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// insertTaskCols are the columns copyTasks writes, in the order
// taskCopyReader encodes them.
var insertTaskCols = []string{"id", "type", "params", "owner", "priority", "pool", "depends_on",
	"max_attempts", "max_lost", "timeout_ms", "idempotency_key", "state", "deps_pending",
	"created_at", "run_after", "updated_at"}

var copyTasksSQL = `COPY tasks (` + strings.Join(insertTaskCols, ", ") + `) FROM STDIN (FORMAT binary)`

// Binary COPY framing and the type facts the encoder relies on (see the
// PostgreSQL COPY documentation and each type's send/receive function).
const (
	copyHeader = "PGCOPY\n\377\r\n\000" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" // signature, flags, no extension
	copyFields = 16                                                               // len(insertTaskCols)
	uuidOID    = 2950                                                             // pg_type oid of uuid, the element type of depends_on
	// pgEpochMicros is 2000-01-01 00:00:00 UTC, the zero of timestamptz's
	// binary form (microseconds), in microseconds since the Unix epoch.
	pgEpochMicros = 946684800 * 1000000
	// copyChunk is about how much one Read encodes ahead.
	copyChunk = 64 << 10
)

// taskCopyReader is the binary COPY stream of its rows, encoded as it is
// read.
type taskCopyReader struct {
	rows    []*core.Task // as inserted (see queuedTask)
	next    int          // the next row to encode
	buf     []byte       // encoded, not yet read: buf[off:]
	off     int
	started bool
	done    bool
}

// Read fills p from the encoded stream, encoding rows until about a chunk
// is buffered ahead.
func (r *taskCopyReader) Read(p []byte) (int, error) {
	if r.off == len(r.buf) {
		if r.done {
			return 0, io.EOF
		}
		r.buf, r.off = r.buf[:0], 0
		if !r.started {
			r.started = true
			r.buf = append(r.buf, copyHeader...)
		}
		for len(r.buf) < max(len(p), copyChunk) && r.next < len(r.rows) {
			r.buf = appendTaskRow(r.buf, r.rows[r.next])
			r.next++
		}
		if r.next == len(r.rows) {
			r.buf = binary.BigEndian.AppendUint16(r.buf, 0xffff) // trailer: field count -1
			r.done = true
		}
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// appendTaskRow appends t as one binary COPY row of insertTaskCols.
func appendTaskRow(b []byte, t *core.Task) []byte {
	b = binary.BigEndian.AppendUint16(b, copyFields)
	b = appendField(b, t.ID[:])
	b = appendTextField(b, t.Type)
	b = appendField(b, t.Params)
	b = appendTextField(b, t.Owner)
	b = appendInt4Field(b, t.Priority)
	b = appendTextField(b, t.Pool)
	b = appendUUIDArrayField(b, t.DependsOn)
	b = appendInt4Field(b, t.MaxAttempts)
	b = appendInt4Field(b, t.MaxLost)
	b = binary.BigEndian.AppendUint32(b, 8)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Timeout.Milliseconds()))
	if t.IdempotencyKey == "" {
		b = binary.BigEndian.AppendUint32(b, math.MaxUint32) // NULL: length -1
	} else {
		b = appendTextField(b, t.IdempotencyKey)
	}
	b = appendTextField(b, string(core.TaskQueued))
	b = appendInt4Field(b, t.DepsPending)
	b = appendTimeField(b, t.CreatedAt)
	b = appendTimeField(b, t.RunAfter)
	return appendTimeField(b, t.UpdatedAt)
}

func appendField(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendTextField(b []byte, v string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// appendInt4Field appends v as an integer; the callers' values are
// validated to fit (priority, attempts, dependency counts).
func appendInt4Field(b []byte, v int) []byte {
	b = binary.BigEndian.AppendUint32(b, 4)
	return binary.BigEndian.AppendUint32(b, uint32(int32(v)))
}

// appendTimeField appends t as a timestamptz: microseconds since
// 2000-01-01 UTC (t is already whole microseconds, see queuedTask).
func appendTimeField(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	us := t.Unix()*1000000 + int64(t.Nanosecond())/1000 - pgEpochMicros
	return binary.BigEndian.AppendUint64(b, uint64(us))
}

// appendUUIDArrayField appends ids as a one-dimensional uuid[] (none: the
// empty array, which has no dimensions).
func appendUUIDArrayField(b []byte, ids []uuid.UUID) []byte {
	if len(ids) == 0 {
		b = binary.BigEndian.AppendUint32(b, 12)
		b = binary.BigEndian.AppendUint32(b, 0) // dimensions
		b = binary.BigEndian.AppendUint32(b, 0) // no nulls
		return binary.BigEndian.AppendUint32(b, uuidOID)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(20+20*len(ids)))
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uuidOID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids))) // dimension length
	b = binary.BigEndian.AppendUint32(b, 1)                // lower bound
	for _, id := range ids {
		b = appendField(b, id[:])
	}
	return b
}
