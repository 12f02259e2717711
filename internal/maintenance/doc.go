// Package maintenance runs the leader's housekeeping as services with one
// start/stop contract (Runner), beside the control loop instead of inside
// its tick.
//
// # Services
//
// New builds one Group of these services; each runs its own pass every
// interval of the injected clock:
//
//	leases         expired leases: requeue, or fail past max_lost
//	               (queue.Service.ExpireLeases); every tick (2 s)
//	timeouts       attempts past their timeout, then stalled attempts
//	               (queue.Service.TimeOutAttempts); every tick
//	queue-ttl      queued tasks older than queue_ttl fail "expired"
//	               (queue.Service.ExpireQueuedTTL); every minute
//	retention      events, logs, final tasks and samples older than
//	               retention (store Prune, SamplePrune); every 10 minutes
//	workers        terminated worker rows older than retention
//	               (store WorkerPrune); every 10 minutes
//	planner-stats  planner statistics of tasks and workers (store
//	               Analyze: ANALYZE on PostgreSQL, nothing on SQLite);
//	               every 10 minutes
//	outputs        expired task outputs, objects then rows, in batches of
//	               1,000 (outputsvc Sweep), when configured; every minute
//
// The task rules stay in package queue: the services only decide when a
// rule runs, never what it does. A pass that requeued, failed or expired
// tasks has already woken the parked claims (queue's Notify, relayed to
// the other replicas); the group then reports it (metrics, one "tick"
// event) and wakes the control loop, so demand is read again at once.
//
// # Lifecycle
//
// Runner is the contract that Service and Group share: Start launches the
// work in the background (a second Start while it runs does nothing);
// Stop cancels it and returns only once it has ended, a pass in progress
// included (Stop before Start does nothing); after Stop the runner can be
// started again, with fresh Started and Stopped signals. Every Start makes
// a pass due at once, so a replica that just won leadership catches up
// before it waits an interval.
//
// The orchestrator starts the group when its elector reports leadership
// won and stops it when leadership is lost or the process shuts down.
// Between those, each pass first asks the Gate whether this replica still
// leads (the elector's trust window) and runs under the fence of its term
// (store.WithFence): the rules' transactions, Prune and WorkerPrune then
// write nothing once another replica was elected (store.ErrFenced), and a
// fenced pass deposes the replica at once.
//
// A started service reads the clock when kicked (Kick) and at least every
// DefaultPoll of real time; the clock alone decides whether a pass is due,
// so tests drive the services with a fake clock and Kick, never sleeping.
// Callers that drive the clock and the control loop themselves (the
// simulator, the orchestrator's scenario harness, benchmarks) run due
// passes in their own goroutine with RunDue instead of starting the group.
package maintenance
