package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/droverhq/drover/internal/core"
	"github.com/jackc/pgx/v5"
)

// BreakerGetAll returns every persisted breaker state, by key.
func (s *Store) BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error) {
	rows, err := s.pool.Query(ctx, `SELECT state FROM breakers ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	raw, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	out := make([]*core.BreakerState, 0, len(raw))
	for _, r := range raw {
		var b core.BreakerState
		if err := json.Unmarshal(r, &b); err != nil {
			return nil, fmt.Errorf("load breakers: decode: %w", err)
		}
		out = append(out, &b)
	}
	return out, nil
}

// BreakerPut saves one breaker state (upsert by key).
func (s *Store) BreakerPut(ctx context.Context, state *core.BreakerState) error {
	if state.Key == "" {
		return core.Invalid("key", "breaker key must not be empty")
	}
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("save breaker %s: encode: %w", state.Key, err)
	}
	err = s.fenced(ctx, func(q querier) error {
		_, err := q.Exec(ctx, `INSERT INTO breakers (key, state, updated_at) VALUES ($1, $2::json, $3)
		ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
			state.Key, string(b), state.UpdatedAt)
		return err
	})
	if err != nil {
		return fmt.Errorf("save breaker %s: %w", state.Key, err)
	}
	return nil
}
