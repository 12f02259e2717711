package orchestrator

import (
	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/prometheus/client_golang/prometheus"
)

// opsMetrics are the operator metrics of docs/metrics.md that the tick
// computes: tasks by pool and state, start durations, breaker states,
// spend, actions, requeues by cause and lease expiries. Labels are bounded
// by the config (pools, placements) and by fixed sets (states, causes,
// actions); no task or worker id is ever a label.
type opsMetrics struct {
	tasks        *prometheus.GaugeVec
	startSeconds *prometheus.HistogramVec
	breaker      *prometheus.GaugeVec
	spend        *prometheus.GaugeVec
	actions      *prometheus.CounterVec
	requeues     *prometheus.CounterVec
	leaseExpired prometheus.Counter
}

func newOpsMetrics(reg prometheus.Registerer) (*opsMetrics, error) {
	m := &opsMetrics{
		tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drover_tasks", Help: "Tasks by pool and state (queued, claimable, owner_blocked, running), as seen by the last tick; queued counts stop at the demand cap.",
		}, []string{"pool", "state"}),
		startSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "drover_worker_start_duration_seconds", Help: "Time from a worker's creation to its first heartbeat (ready), by placement.",
			Buckets: []float64{15, 30, 60, 90, 120, 180, 240, 300, 420, 600, 900, 1200, 1800},
		}, []string{"placement"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drover_breaker_state", Help: "1 for the current state of each placement's breaker (closed, open, half-open), else 0.",
		}, []string{"placement", "state"}),
		spend: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drover_spend_usd_per_hour", Help: "Sum of the live workers' prices by pool, in USD per hour.",
		}, []string{"pool"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_tick_actions_total", Help: "Actions taken by the control loop, by action (spawn, ready, drain, fail, terminate, orphan_delete).",
		}, []string{"action"}),
		requeues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_task_requeues_total", Help: "Running tasks put back (or failed as lost) by cause: worker_failed, lease_expired, timeout.",
		}, []string{"cause"}),
		leaseExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_lease_expiries_total", Help: "Task leases found expired by the leader's maintenance.",
		}),
	}
	// Every cause is served from the start (at 0), as when the tick
	// counted the maintenance's requeues itself.
	for _, cause := range []string{"worker_failed", "lease_expired", "timeout", "stalled"} {
		m.requeues.WithLabelValues(cause)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.tasks, m.startSeconds, m.breaker, m.spend, m.actions, m.requeues, m.leaseExpired} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

var breakerStates = []core.BreakerStatus{core.BreakerClosed, core.BreakerOpen, core.BreakerHalfOpen}

// observe records what tick t saw and did.
func (m *opsMetrics) observe(o *Orchestrator, t *tick) {
	m.tasks.Reset()
	for pool, d := range t.demand {
		m.tasks.WithLabelValues(pool, "queued").Set(float64(d.Queued))
		m.tasks.WithLabelValues(pool, "claimable").Set(float64(d.Claimable))
		m.tasks.WithLabelValues(pool, "owner_blocked").Set(float64(d.OwnerBlocked))
		m.tasks.WithLabelValues(pool, "running").Set(float64(d.Running))
	}
	for _, id := range t.rep.Ready {
		if w := t.byID[id]; w != nil {
			m.startSeconds.WithLabelValues(w.Placement).Observe(t.now.Sub(w.CreatedAt).Seconds())
		}
	}
	for name, pc := range o.cfg.Pools {
		for _, pl := range pc.Placements() {
			key := pl.Key(name)
			cur := core.BreakerClosed
			if st := t.breakers[key]; st != nil && st.Status != "" {
				cur = st.Status
			}
			for _, s := range breakerStates {
				v := 0.0
				if s == cur {
					v = 1
				}
				m.breaker.WithLabelValues(key, string(s)).Set(v)
			}
		}
	}
	spend := map[string]float64{}
	for name := range o.cfg.Pools {
		spend[name] = 0
	}
	for _, w := range t.workers {
		if w.State.Live() || w.State == core.WorkerTerminating {
			spend[w.Pool] += w.PricePerHour
		}
	}
	for pool, v := range spend {
		m.spend.WithLabelValues(pool).Set(v)
	}
	for action, n := range map[string]int{"spawn": len(t.rep.Spawned), "ready": len(t.rep.Ready), "drain": len(t.rep.Drained),
		"fail": len(t.rep.Failed), "terminate": len(t.rep.Terminated), "orphan_delete": len(t.rep.OrphansDeleted)} {
		m.actions.WithLabelValues(action).Add(float64(n))
	}
	m.requeues.WithLabelValues("worker_failed").Add(float64(t.rep.Requeued))
}

// observeMaintenance records what a maintenance pass did.
func (m *opsMetrics) observeMaintenance(rep queue.MaintainReport) {
	m.requeues.WithLabelValues("lease_expired").Add(float64(len(rep.Requeued)))
	m.requeues.WithLabelValues("timeout").Add(float64(len(rep.TimedOut)))
	m.requeues.WithLabelValues("stalled").Add(float64(len(rep.Stalled)))
	m.leaseExpired.Add(float64(len(rep.Requeued)))
}
