package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/server"
)

// shutdownMessage is the line `drover serve` prints when it stops: why, and
// what happens to the local agents it started (they are not stopped: they
// carry on through a restart, and exit on their own after
// server_lost_timeout without a server). See docs/operations.md.
func shutdownMessage(ctx context.Context, cfg *config.Config, srv *server.Server, runErr error) string {
	var b strings.Builder
	if runErr != nil {
		fmt.Fprintf(&b, "drover serve stopped on an error: %v", runErr)
	} else {
		b.WriteString("drover serve shut down")
	}
	if srv.Local == nil {
		return b.String()
	}
	n := 0
	if insts, err := srv.Local.List(ctx); err == nil {
		n = len(insts)
	}
	if n == 0 {
		b.WriteString("; no local agents are running")
		return b.String()
	}
	fmt.Fprintf(&b, "; %d local agent(s) keep running (state in %s): they carry on if the server is back within server_lost_timeout (%s), else they kill their handlers and exit. To stop them now: kill -TERM $(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' %s/*.json)",
		n, srv.Local.Dir(), cfg.EffectiveServerLostTimeout().Round(time.Second), srv.Local.Dir())
	return b.String()
}
