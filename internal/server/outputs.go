package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/droverhq/drover/internal/blobstore"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/outputs"
	"github.com/droverhq/drover/internal/outputsvc"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store"
)

// NewOutputs opens the output store of cfg and builds the outputs
// service. The embedded store's signing secret is read from (or created
// in) cfg's signing key file.
func NewOutputs(ctx context.Context, cfg *config.Config, st store.Store, q *queue.Service, clock core.Clock, log *slog.Logger) (*outputsvc.Service, error) {
	bs, err := blobstore.Open(ctx, cfg.OutputStoreURL())
	if err != nil {
		return nil, fmt.Errorf("open output store: %w", err)
	}
	var signer *outputs.Signer
	if bs.Embedded() {
		key, err := ReadOrCreateToken(cfg.OutputSigningKeyFile())
		if err != nil {
			return nil, fmt.Errorf("output signing key %s: %w", cfg.OutputSigningKeyFile(), err)
		}
		if signer, err = outputs.NewSigner([]byte(key)); err != nil {
			return nil, fmt.Errorf("output signing key %s: %w", cfg.OutputSigningKeyFile(), err)
		}
	}
	svc, err := outputsvc.New(outputsvc.Config{
		Store: st, Blob: bs, Signer: signer, Clock: clock, Completer: q,
		Limits:    outputs.Limits{MaxFileSize: cfg.Outputs.MaxFileSize, MaxFiles: cfg.Outputs.MaxFiles},
		URLExpiry: cfg.Outputs.URLExpiry.D(), PartSize: cfg.Outputs.PartSize,
		Required: cfg.RequiredOutputsByType(), Retention: cfg.OutputRetention,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("output store ready", "store", bs.String())
	return svc, nil
}
