package provider

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the decorator's collectors. One set is registered per
// Registerer and shared by every provider instrumented on it.
type metrics struct {
	calls    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var (
	metricsMu  sync.Mutex
	metricsFor = map[prometheus.Registerer]*metrics{}
)

func newMetrics(reg prometheus.Registerer) *metrics {
	metricsMu.Lock()
	defer metricsMu.Unlock()
	if m, ok := metricsFor[reg]; ok {
		return m
	}
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_provider_calls_total",
			Help: "Provider API calls by provider and operation.",
		}, []string{"provider", "op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_provider_errors_total",
			Help: "Provider API errors by provider, operation and error kind.",
		}, []string{"provider", "op", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drover_provider_call_duration_seconds",
			Help:    "Latency of provider API calls by provider and operation.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider", "op"}),
	}
	if reg != nil {
		m.calls = register(reg, m.calls)
		m.errors = register(reg, m.errors)
		m.duration = register(reg, m.duration)
		metricsFor[reg] = m
	}
	return m
}

// register registers c on reg, or returns the collector already registered
// under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("provider metrics: " + err.Error()) // programmer error: a clashing metric name
	}
	return c
}

// instrumented decorates a Provider with metrics and error logs.
type instrumented struct {
	next   Provider
	m      *metrics
	logger *slog.Logger
	now    func() time.Time
}

var _ Provider = (*instrumented)(nil)

// Instrument wraps p so that every call is counted by operation, every
// error by operation and Kind, and every latency observed, on reg (nil: no
// registration), and errors are logged at warn level on logger (nil:
// discarded). Logs name the operation, the worker id, the placement and the
// error, never the request's Env: it holds the worker's token. Latency is
// measured with the wall clock because it is a property of the remote API,
// not of Drover's (possibly simulated) time.
func Instrument(p Provider, reg prometheus.Registerer, logger *slog.Logger) Provider {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	in := &instrumented{next: p, m: newMetrics(reg), logger: logger, now: time.Now}
	if ord, ok := p.(Orderer); ok {
		return &instrumentedOrderer{instrumented: in, ord: ord}
	}
	return in
}

// instrumentedOrderer is the decorator of a provider that also orders
// candidates: the wrapper must not hide the Orderer the orchestrator
// looks for.
type instrumentedOrderer struct {
	*instrumented
	ord Orderer
}

var _ Orderer = (*instrumentedOrderer)(nil)

// Order implements Orderer by asking the inner provider.
func (i *instrumentedOrderer) Order(ctx context.Context, pool string, placements []Placement) []Placement {
	return i.ord.Order(ctx, pool, placements)
}

// Unwrap returns the decorated provider (for callers that need its
// concrete type).
func (i *instrumented) Unwrap() Provider { return i.next }

func (i *instrumented) observe(ctx context.Context, op string, start time.Time, err error, attrs ...slog.Attr) {
	name := i.next.Name()
	i.m.calls.WithLabelValues(name, op).Inc()
	i.m.duration.WithLabelValues(name, op).Observe(i.now().Sub(start).Seconds())
	if err == nil {
		return
	}
	kind := KindOf(err)
	i.m.errors.WithLabelValues(name, op, string(kind)).Inc()
	if kind == KindNotFound && (op == "delete" || op == "get") {
		return // expected: the instance is already gone
	}
	attrs = append([]slog.Attr{
		slog.String("provider", name), slog.String("op", op),
		slog.String("kind", string(kind)), slog.String("error", err.Error()),
	}, attrs...)
	i.logger.LogAttrs(ctx, slog.LevelWarn, "provider call failed", attrs...)
}

// Name implements Provider.
func (i *instrumented) Name() string { return i.next.Name() }

// Create implements Provider.
func (i *instrumented) Create(ctx context.Context, req *CreateRequest) (*Instance, error) {
	start := i.now()
	inst, err := i.next.Create(ctx, req)
	i.observe(ctx, "create", start, err,
		slog.String("worker", req.WorkerID), slog.String("pool", req.Pool),
		slog.String("gpu", req.Placement.GPU), slog.String("region", req.Placement.Region))
	return inst, err
}

// Get implements Provider.
func (i *instrumented) Get(ctx context.Context, id string) (*Instance, error) {
	start := i.now()
	inst, err := i.next.Get(ctx, id)
	i.observe(ctx, "get", start, err, slog.String("instance", id))
	return inst, err
}

// List implements Provider.
func (i *instrumented) List(ctx context.Context) ([]*Instance, error) {
	start := i.now()
	list, err := i.next.List(ctx)
	i.observe(ctx, "list", start, err)
	return list, err
}

// Delete implements Provider.
func (i *instrumented) Delete(ctx context.Context, id string) error {
	start := i.now()
	err := i.next.Delete(ctx, id)
	i.observe(ctx, "delete", start, err, slog.String("instance", id))
	return err
}
