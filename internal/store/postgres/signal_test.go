package postgres_test

import (
	"slices"
	"testing"
	"time"
)

// A signal sent by one replica reaches the other, not the sender, and
// reports the cross-replica latency (p50, p99) of 200 sends.
func TestSignalsCrossReplica(t *testing.T) {
	a, b := twoReplicas(t)
	gotA := make(chan string, 16)
	gotB := make(chan string, 16)
	busA, err := a.Signals(func(s string) { gotA <- s }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer busA.Close()
	busB, err := b.Signals(func(s string) { gotB <- s }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer busB.Close()

	const n = 200
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		busA.Send("submit")
		select {
		case s := <-gotB:
			if s != "submit" {
				t.Fatalf("B received %q, want submit", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("B did not receive A's signal within 5 s")
		}
		lat = append(lat, time.Since(start))
	}
	select {
	case s := <-gotA:
		t.Fatalf("A heard its own signal %q", s)
	default:
	}
	slices.Sort(lat)
	t.Logf("cross-replica signal latency over %d sends: p50 %s, p99 %s, max %s", n, lat[n/2], lat[n*99/100], lat[n-1])
}
