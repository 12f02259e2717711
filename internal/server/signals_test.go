package server

import (
	"slices"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/core"
	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/store/postgres"
	"github.com/droverhq/drover/internal/store/postgres/pgtest"
)

// Two replicas on one PostgreSQL: a submit on A wakes the claims parked on
// B and B's control loop (a follower's submit reaches the leader's tick the
// same way). The test reports the latency from submit to B's wake-up.
func TestSignalsWakeOtherReplica(t *testing.T) {
	base := pgtest.URL(t)
	u := pgtest.WithParams(t, base, map[string]string{"search_path": pgtest.NewSchema(t, base), "pool_max_conns": "4"})
	replica := func() *queue.Service {
		st, err := postgres.Open(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if _, err := st.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		q := queue.New(st, core.SystemClock{}, queue.Config{}, nil)
		bus, err := WireSignals(st, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if bus == nil {
			t.Fatal("no signal bus on PostgreSQL")
		}
		t.Cleanup(bus.Close)
		return q
	}
	a, b := replica(), replica()
	woken := make(chan string, 64)
	b.SetWaker(func(reason string) { woken <- reason })

	const n = 100
	lat := make([]time.Duration, 0, n)
	for range n {
		parked := b.Notify()
		start := time.Now()
		if _, err := a.Submit(t.Context(), []queue.SubmitRequest{{Type: "render"}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-parked:
		case <-time.After(5 * time.Second):
			t.Fatal("a claim parked on B was not woken within 5 s of a submit on A")
		}
		lat = append(lat, time.Since(start))
		select {
		case r := <-woken:
			if r != queue.SignalSubmit {
				t.Fatalf("B's control loop woken for %q, want submit", r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("B's control loop was not woken by a submit on A")
		}
		for len(woken) > 0 {
			<-woken
		}
	}
	slices.Sort(lat)
	t.Logf("submit on A → claim parked on B woken, %d submits: p50 %s, p99 %s, max %s", n, lat[n/2], lat[n*99/100], lat[n-1])
}
