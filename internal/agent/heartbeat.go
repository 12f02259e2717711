package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/droverhq/drover/internal/api/wire"
	"github.com/droverhq/drover/internal/client"
)

// heartbeatLoop beats every interval until bg ends. parent is the agent's
// outer context, whose cancellation does not stop the beats (running tasks
// must keep their leases while they are reported).
//
// Each beat waits at most beatTimeout: a replica that hangs (paused, or
// cut off from its database) behind a load balancer must not hold the one
// heartbeat in flight until the server's heartbeat_timeout runs out; the
// next beat, tried at once, goes to another replica.
func (a *Agent) heartbeatLoop(bg, parent context.Context, interval, serverTimeout time.Duration) {
	perBeat := beatTimeout(interval, serverTimeout)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := 0
	for {
		select {
		case <-bg.Done():
			return
		case <-t.C:
		}
		req := a.heartbeatRequest(bg, interval)
		hctx, cancel := context.WithTimeout(bg, perBeat)
		reply, err := a.api.Heartbeat(hctx, a.opt.WorkerID, req)
		cancel()
		if err != nil {
			if bg.Err() != nil {
				return
			}
			if fatalStatus(err) {
				a.log.Error("server rejected the heartbeat; stopping", "err", err)
				a.Stop("heartbeat rejected")
				continue
			}
			failing++
			if failing == 1 || failing%10 == 0 {
				a.log.Warn("heartbeat failed; tasks keep running", "err", err, "failures", failing)
			}
			if !client.IsRetryable(err) {
				a.log.Warn("heartbeat rejected", "err", err)
				continue
			}
			// Put the progress back for the next beat.
			a.mu.Lock()
			for _, p := range req.Progress {
				if _, ok := a.progress[p.TaskID]; !ok {
					if _, held := a.tasks[p.TaskID]; held {
						a.progress[p.TaskID] = p
					}
				}
			}
			a.mu.Unlock()
			continue
		}
		if failing > 0 {
			a.log.Info("heartbeat recovered", "after_failures", failing)
			failing = 0
		}
		a.obey(reply)
	}
}

// beatTimeout bounds one heartbeat request: a fifth of the server's
// heartbeat_timeout, so that several beats (through other replicas) fit
// before the server declares the worker lost, within [1s, 10s] and never
// below the interval (default 10s when the server names no timeout).
func beatTimeout(interval, serverTimeout time.Duration) time.Duration {
	if serverTimeout <= 0 {
		return max(interval*2, 10*time.Second)
	}
	return max(min(serverTimeout/5, 10*time.Second), time.Second, min(interval, 10*time.Second))
}

func (a *Agent) heartbeatRequest(ctx context.Context, interval time.Duration) *wire.HeartbeatRequest {
	req := &wire.HeartbeatRequest{Leases: []wire.Lease{}}
	a.mu.Lock()
	for _, rt := range a.tasks {
		if !rt.lost {
			req.Leases = append(req.Leases, rt.lease)
		}
	}
	for id, p := range a.progress {
		req.Progress = append(req.Progress, p)
		delete(a.progress, id)
	}
	a.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, min(interval, 5*time.Second))
	gpus, err := a.opt.GPU.Probe(pctx)
	cancel()
	if err == nil && len(gpus) > 0 {
		if b, err := json.Marshal(map[string]any{"gpus": gpus}); err == nil {
			req.Metrics = b
		}
	}
	return req
}

// obey applies the commands of a heartbeat reply.
func (a *Agent) obey(reply *wire.HeartbeatResponse) {
	for _, l := range reply.LostLeases {
		a.mu.Lock()
		rt, ok := a.tasks[l.TaskID]
		if ok && rt.lease.Token == l.Token && !rt.lost && !rt.finished {
			rt.lost = true
			rt.cancel()
			a.log.Warn("lease lost: killing handler", "task", l.TaskID.String())
		}
		a.mu.Unlock()
	}
	if reply.Stop {
		a.log.Warn("server says stop: killing handlers")
		a.Stop("stop command")
		return
	}
	if reply.Drain && !a.isDraining() {
		a.log.Info("server says drain: finishing running tasks, claiming nothing more")
		a.Drain()
	}
}
