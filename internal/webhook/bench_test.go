package webhook_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/droverhq/drover/internal/queue"
	"github.com/droverhq/drover/internal/webhook"
)

// BenchmarkDeliver measures enqueue + signed delivery of final tasks'
// webhooks to a loopback receiver (SQLite outbox), reported as
// deliveries/s.
func BenchmarkDeliver(b *testing.B) {
	const n = 500
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for b.Loop() {
		b.StopTimer()
		bd := setupTB(b)
		reqs := make([]queue.SubmitRequest, n)
		for i := range reqs {
			reqs[i] = queue.SubmitRequest{Type: "render", CallbackURL: srv.URL}
		}
		res, err := bd.q.Submit(b.Context(), reqs)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if _, err := bd.q.Cancel(b.Context(), r.Task.ID); err != nil {
				b.Fatal(err)
			}
		}
		d, err := webhook.New(webhook.Config{Store: bd.st, Clock: bd.clock, Secret: secret})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		sent := 0
		for sent < n {
			k, err := d.Step(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			sent += k
		}
	}
	b.ReportMetric(float64(got.Load())/b.Elapsed().Seconds(), "deliveries/s")
}
