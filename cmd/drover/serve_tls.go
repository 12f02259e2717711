package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/droverhq/drover/internal/server"
)

// reloadTLSOnHangup reads the TLS certificate again on every SIGHUP until
// ctx ends.
func reloadTLSOnHangup(ctx context.Context, srv *server.Server, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := srv.ReloadTLS(); err != nil {
				log.Error("SIGHUP: TLS certificate not reloaded; the old one stays in use", "err", err)
			} else {
				log.Info("SIGHUP: TLS certificate reloaded")
			}
		}
	}
}
