package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/droverhq/drover/internal/core"
)

// BreakerGetAll returns every persisted breaker state, by key.
func (s *Store) BreakerGetAll(ctx context.Context) ([]*core.BreakerState, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT state FROM breakers ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	defer rows.Close()
	out := []*core.BreakerState{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("load breakers: %w", err)
		}
		var st core.BreakerState
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("load breakers: decode: %w", err)
		}
		out = append(out, &st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load breakers: %w", err)
	}
	return out, nil
}

// BreakerPut upserts one breaker state.
func (s *Store) BreakerPut(ctx context.Context, state *core.BreakerState) error {
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("save breaker %s: encode: %w", state.Key, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO breakers (key, state, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
		state.Key, string(b), micros(state.UpdatedAt))
	if err != nil {
		return fmt.Errorf("save breaker %s: %w", state.Key, err)
	}
	return nil
}
