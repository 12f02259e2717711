package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRetryDeadlock(t *testing.T) {
	deadlock := fmt.Errorf("claim: %w", &pgconn.PgError{Code: "40P01"})
	other := &pgconn.PgError{Code: "23505"}
	for _, tc := range []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   error
	}{
		{"success", []error{nil}, 1, nil},
		{"deadlock then success", []error{deadlock, deadlock, nil}, 3, nil},
		{"other error is not retried", []error{other}, 1, other},
		{"gives up", []error{deadlock, deadlock, deadlock, deadlock, deadlock, nil}, maxDeadlockRetries, deadlock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := retryDeadlock(context.Background(), func() error {
				calls++
				return tc.errs[calls-1]
			})
			if calls != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if !errors.Is(err, tc.wantErr) && err != tc.wantErr {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	_ = retryDeadlock(ctx, func() error { calls++; return deadlock })
	if calls != 1 {
		t.Fatalf("retried %d times after the context was cancelled", calls)
	}
}
