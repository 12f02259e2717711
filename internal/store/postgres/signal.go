package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/droverhq/drover/internal/store"
	"github.com/jackc/pgx/v5"
)

// bus is the LISTEN/NOTIFY signal bus (store.SignalBus). One goroutine
// listens on a dedicated connection; another sends the pending signals as
// one pg_notify per burst. The channel is derived from the schema, so
// deployments in different schemas of one database do not hear each other.
type bus struct {
	pool     *Store
	channel  string
	self     string
	onSignal func(string)
	log      *slog.Logger
	cancel   context.CancelFunc
	done     sync.WaitGroup

	mu      sync.Mutex
	pending []string
	kick    chan struct{}
}

var _ store.Signaler = (*Store)(nil)

// Signals starts the LISTEN/NOTIFY bus; see store.Signaler.
func (s *Store) Signals(onSignal func(signal string), log *slog.Logger) (store.SignalBus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var schema string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		cancel()
		return nil, fmt.Errorf("signal bus: read schema: %w", err)
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(schema))
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	bs := &bus{pool: s, channel: fmt.Sprintf("drover_signal_%08x", h.Sum32()), self: hex.EncodeToString(b),
		onSignal: onSignal, log: log, cancel: cancel, kick: make(chan struct{}, 1)}
	ready := make(chan error, 1)
	bs.done.Go(func() { bs.listen(ctx, ready) })
	bs.done.Go(func() { bs.send(ctx) })
	// Wait until LISTEN is in place, so that a signal sent by another
	// replica right after start-up is heard.
	select {
	case err := <-ready:
		if err != nil {
			bs.Close()
			return nil, err
		}
	case <-time.After(10 * time.Second):
		bs.Close()
		return nil, fmt.Errorf("signal bus: LISTEN not in place after 10s")
	}
	return bs, nil
}

// Send queues signal; see store.SignalBus.
func (b *bus) Send(signal string) {
	b.mu.Lock()
	if !slices.Contains(b.pending, signal) {
		b.pending = append(b.pending, signal)
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Close stops both goroutines and releases the listening connection.
func (b *bus) Close() {
	b.cancel()
	b.done.Wait()
}

func (b *bus) send(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		b.mu.Lock()
		sigs := b.pending
		b.pending = nil
		b.mu.Unlock()
		if len(sigs) == 0 {
			continue
		}
		payload := b.self + " " + strings.Join(sigs, ",")
		if _, err := b.pool.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, b.channel, payload); err != nil && ctx.Err() == nil {
			// The others still see the work at their next poll or tick.
			b.log.Warn("send cross-replica signal", "err", err, "signals", sigs)
		}
	}
}

func (b *bus) listen(ctx context.Context, ready chan<- error) {
	backoff := 50 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := b.listenOnce(ctx, func() {
			if first {
				ready <- nil
				first = false
			} else {
				// Signals may have been lost while disconnected.
				b.onSignal("submit")
			}
			backoff = 50 * time.Millisecond
		})
		if ctx.Err() != nil {
			return
		}
		if first {
			ready <- err
			return
		}
		b.log.Warn("cross-replica signal listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// listenOnce listens until the connection fails or ctx ends.
func (b *bus) listenOnce(ctx context.Context, listening func()) error {
	conn, err := b.pool.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("signal bus: acquire connection: %w", err)
	}
	// The connection leaves the pool: its LISTEN state must not be reused.
	defer func() {
		c := conn.Hijack()
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.Close(cctx)
		cancel()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{b.channel}.Sanitize()); err != nil {
		return fmt.Errorf("signal bus: listen: %w", err)
	}
	listening()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("signal bus: wait: %w", err)
		}
		from, sigs, ok := strings.Cut(n.Payload, " ")
		if !ok || from == b.self {
			continue
		}
		for sig := range strings.SplitSeq(sigs, ",") {
			b.onSignal(sig)
		}
	}
}
