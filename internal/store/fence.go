package store

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ErrFenced is returned by a leader-only write whose leadership term is no
// longer the current one: another replica was elected since (the writer
// was paused, partitioned or slow). Nothing was written.
var ErrFenced = errors.New("fenced: this replica's leadership term is over")

// Fence identifies one leadership term. A write made under a context
// carrying a Fence (WithFence) checks, in its own transaction, that the
// leader row still names this holder and term; otherwise it fails with
// ErrFenced and changes nothing.
type Fence struct {
	LeaderID string
	Term     int64
}

type fenceKey struct{}

// WithFence returns ctx carrying f: every leader-only store write made
// with it (worker insert and update, breaker put, worker request delete,
// Tx) is fenced by f.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence ctx carries, if any.
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok && f.LeaderID != ""
}

// Leader is the current leadership row.
type Leader struct {
	LeaderID  string    `json:"leader_id"`
	Term      int64     `json:"term"`
	ElectedAt time.Time `json:"elected_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// PreviousID is the holder before this one ("" for the first term).
	PreviousID string `json:"previous_id,omitempty"`
	// Cause is how this holder got the row from PreviousID: "takeover"
	// (the previous holder's lease expired or its session ended) or
	// "resign".
	Cause string `json:"cause,omitempty"`
}

// LeaderReader is implemented by stores that can report the leadership
// row (both backends). It is separate from Store so that adding it does
// not break other implementations.
type LeaderReader interface {
	// LeaderGet returns the leadership row, or core.ErrNotFound when no
	// replica was ever elected.
	LeaderGet(ctx context.Context) (*Leader, error)
}

// SignalBus carries small signals ("submit", "claimable", ...) between the
// replicas that share one database.
type SignalBus interface {
	// Send queues signal for the other replicas; it never blocks, and
	// signals sent close together travel as one message.
	Send(signal string)
	// Close stops the bus.
	Close()
}

// Signaler is implemented by stores whose database can carry signals
// between processes (PostgreSQL: LISTEN/NOTIFY). onSignal receives every
// signal sent by another replica (never this one's own); after a lost
// connection it is called with "submit" once the bus listens again, since
// signals may have been missed meanwhile.
type Signaler interface {
	Signals(onSignal func(signal string), log *slog.Logger) (SignalBus, error)
}
