// Package orchestrator is Drover's control loop: it observes the store and
// the providers, reconciles the two, advances every worker's lifecycle,
// sizes each pool, places spawns on candidate placements behind their
// breakers and records every decision as an event. It also holds leader
// election (only the leader ticks), operator breaker actions and the
// leader's samples; the status read model is package status.
//
// # Overview
//
// One Tick is observe → reconcile → advance → decide → place → record:
//
//  1. Observe in a constant number of queries, whatever the fleet size:
//     WorkerActivity, TaskDemand, BreakerGetAll, WorkerRequestList, plus
//     one provider.List per provider, all at once. The leader keeps the
//     live worker rows in memory (fleet.go: it is their only writer) and
//     reads each tick only what others write to them (heartbeats,
//     completions, running leases); it reads them in full
//     (WorkerList(LiveOnly)) when it starts or wins a term, after a failed
//     tick or a conflicting write, when the activity read disagrees with
//     its copy, and every five minutes. Demand is read
//     with a cap (the largest pool max × concurrency, at least 1000), so
//     the tick's cost does not grow with the backlog; a count at the cap is
//     shown as "≥N". Expired leases, attempt timeouts and queue TTL are not
//     the tick's: they are the leader's maintenance services (below).
//  2. Reconcile, fail closed: when a provider's List errors, nothing that
//     depends on it happens this tick (no orphan deletes, no vanished, no
//     provisioning→booting, no adoption). Instances tagged with a worker id
//     that has no live row are deleted after the pool's orphan_grace
//     (default 2m). Live rows whose instance is missing from two
//     successive good lists fail as vanished (preempted when the provider
//     says so).
//  3. Advance lifecycles (below) and requeue, in one query, every lease
//     held by a worker that failed or is being terminated this tick.
//  4. Decide each pool's size with the pure function Decide.
//  5. Place each spawn on the first candidate placement whose breaker
//     allows it; a capacity (or quota) error moves on to the next
//     candidate in the same tick.
//  6. Record: changed breakers (BreakerPut) and all events of the tick in
//     one EventInsertMany. A "tick" event is written when something
//     changed, or when a spawn was blocked and the reason differs from the
//     last one recorded (an unchanged blocked reason is repeated at most
//     once a minute, so an idle or blocked fleet does not flood the log).
//
// # Worker state model
//
//	requested ─create ok─▶ provisioning ─instance running─▶ booting ─first heartbeat─▶ ready
//	   │                        │                              │                        │
//	   │ create failed          │ provision_timeout            │ boot_timeout           │ heartbeat_timeout
//	   ▼                        ▼                              ▼                        ▼
//	 failed(capacity|quota|…) failed(provision-timeout)   failed(boot-timeout)     failed(heartbeat-lost)
//	ready ──scale-down──▶ draining ─no leases, or drain_timeout─▶ terminating ─gone─▶ terminated
//	failed ─────────────────────────────────────────────────────▶ terminating ─gone─▶ terminated
//
// The row is inserted in state requested before provider.Create, with a
// fresh token whose SHA-256 is stored; the token itself only travels in the
// instance env. A requested row older than one tick is an interrupted
// spawn, or one whose create got no usable answer (a 5xx that could not be
// checked, a call past call_timeout: provider.MaybeCreated): the next good
// List adopts the instance carrying its worker id (→ provisioning) or the
// row fails (provider-error). No duplicate, no orphan.
//
// boot_timeout runs from creation to the first heartbeat (default 15m),
// separately from heartbeat_timeout (25s) for ready and draining workers:
// the seed incident killed pods that needed 5–6 minutes to start. A worker
// that registers while still provisioning goes to ready in the same tick.
//
// terminating calls provider.Delete every tick until the provider says the
// instance is gone (ErrNotFound, or absent from a good List after a
// delete), counting DeleteAttempts. An instance missing from two good lists
// fails its worker as vanished (preempted when the provider says so).
//
// # Failure handling and the breaker
//
// Every failure has a core.FailureClass and an event with the worker's age.
// A worker reaching ready records a success on its placement's breaker. A
// failure is recorded when breaker.CountsAsStartFailure says so, except
// when the worker held leases as it failed: a task may have killed it (a
// poison task), which says nothing about the placement. quota and
// invalid-request errors Trip the key at once with a reason naming the
// class. Scale-down, drain and operator terminations never touch the
// breaker. Facts others report (the queue's gpu-missing at registration,
// operator drain and terminate) arrive as worker requests, which the tick
// applies with their events.
//
// # Leadership
//
// Elector holds a lease row through store.LeaderAttemptElect (TTL 15s,
// re-elected every 5s) and trusts it only until attemptStart + TTL −
// safety margin. Run ticks only while IsLeader. On SQLite there is one
// process, which always wins, through the same code.
//
// Followers attempt every second. On PostgreSQL the leader also holds a
// session advisory lock, so a follower takes over as soon as a dead
// leader's session ends; a paused or partitioned leader is waited out
// through the TTL. Each change of holder starts a new term: every tick
// carries the fence of the term it was elected in (store.WithFence), and
// the store rejects its leader-only writes once another term began
// (store.ErrFenced), whatever this process believes. A fenced tick is
// counted, logged and deposes the replica at once. Gaining leadership,
// resigning at shutdown and takeovers are leader.changed events.
//
// # Maintenance
//
// The leader's housekeeping (package maintenance: expired leases, attempt
// timeouts and stalls, queue TTL, retention, terminated worker rows,
// planner statistics, expired outputs) runs as services beside the loop.
// Run starts them when the elector reports leadership won and stops them
// when it is lost or at shutdown (maintain.go); every pass checks the trust
// window and carries the term's fence. A pass that requeued work wakes the
// loop. Drivers that call Tick themselves call MaintainDue after it.
package orchestrator
