package orchestrator

import (
	"github.com/droverhq/drover/internal/core"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the orchestrator's Prometheus collectors. They always exist;
// they are registered only when Deps.Registerer is set.
type metrics struct {
	tickSeconds prometheus.Histogram
	workers     *prometheus.GaugeVec
	spawns      *prometheus.CounterVec
	failures    *prometheus.CounterVec
	requeued    prometheus.Counter
	// leader is 1 for the replica id that leads, as this replica sees it.
	leader *prometheus.GaugeVec
	term   prometheus.Gauge
	fenced prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		tickSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drover_tick_duration_seconds", Help: "Duration of one control-loop tick.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drover_workers", Help: "Live workers by pool and state, as seen by the last tick.",
		}, []string{"pool", "state"}),
		spawns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_worker_spawns_total", Help: "Workers whose instance was created.",
		}, []string{"pool"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_worker_failures_total", Help: "Workers failed, by failure class.",
		}, []string{"pool", "class"}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_tasks_requeued_by_orchestrator_total", Help: "Tasks requeued (or failed as lost) because their worker failed or was terminated.",
		}),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drover_leader", Help: "1 when this replica (label id) is the leader, else 0.",
		}, []string{"id"}),
		term: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_leader_term", Help: "The leadership term this replica last won.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_leader_fenced_writes_total", Help: "Leader-only writes rejected because this replica's leadership term was over.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.tickSeconds, m.workers, m.spawns, m.failures, m.requeued, m.leader, m.term, m.fenced} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(t *tick) {
	m.tickSeconds.Observe(t.rep.Duration.Seconds())
	m.requeued.Add(float64(t.rep.Requeued))
	// Counted first, then set once per pool and state: a label lookup
	// per worker costs milliseconds at 10,000 workers.
	type key struct {
		pool  string
		state core.WorkerState
	}
	counts := map[key]int{}
	for _, w := range t.workers {
		if w.State.Live() || w.State == core.WorkerTerminating || w.State == core.WorkerFailed {
			counts[key{w.Pool, w.State}]++
		}
	}
	m.workers.Reset()
	for k, n := range counts {
		m.workers.WithLabelValues(k.pool, string(k.state)).Set(float64(n))
	}
}

func (m *metrics) setLeader(id string, leader bool) {
	v := 0.0
	if leader {
		v = 1
	}
	m.leader.WithLabelValues(id).Set(v)
}
