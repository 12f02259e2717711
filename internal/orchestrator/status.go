package orchestrator

import (
	"context"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/status"
	"github.com/droverhq/drover/internal/store"
)

// The status read model lives in package status; these names remain for
// callers of the orchestrator's API.

// Verdicts of Status.
const (
	VerdictHealthy  = status.VerdictHealthy
	VerdictDegraded = status.VerdictDegraded
	VerdictBlocked  = status.VerdictBlocked
)

// Status is the status report (status.Report).
type Status = status.Report

// BuildStatus is status.Build.
func BuildStatus(ctx context.Context, st store.Store, cfg *config.Config, now time.Time) (*Status, error) {
	return status.Build(ctx, st, cfg, now)
}
