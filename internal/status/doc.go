// Package status is Drover's read model of the fleet: the report behind
// `drover status` (the seed report, generated), the answers of `drover why`
// and the time series behind the dashboard's charts. The CLI (through the
// API), the API and the web dashboard all use it; it only reads the store.
//
// Entry points (stable; the dashboard codes against them):
//
//   - Build(ctx, store, cfg, now) (*Report, error): the status report.
//     Report.Text() renders it as plain words; its JSON form (snake_case
//     keys, durations in seconds under keys ending in _s, times in RFC 3339)
//     is described by docs/status.schema.json.
//   - Why(ctx, store, cfg, kind, id, now) (*WhyReport, error): the chain of
//     events behind a task's, worker's or pool's current state, newest
//     first. An unknown id is a *core.Error with code ENOTFOUND whose
//     message is "no task with id …" (worker, pool).
//   - Series(ctx, store, since, until) (*SeriesReport, error): the fleet's
//     sampled numbers (queue depth, workers by state, throughput, spend per
//     hour) for charts over the last hour or day.
//   - Breakers(ctx, store, cfg, now) ([]Breaker, error): every breaker with
//     its numbers (the list of `drover breaker list`).
//
// # Verdict
//
// The verdict describes now, in this order:
//
//   - NO WORKERS: tasks are claimable and no worker is live at all, and
//     nothing is blocking spawns (the loop has not reacted yet, or max is 0).
//   - SPAWNING BLOCKED: some pool with claimable work cannot spawn at all:
//     every candidate placement has an open breaker (the reason names the
//     breakers and the next canary time), or a spend cap is reached.
//   - NO CAPACITY: claimable work, no ready worker, and every recent start
//     attempt of the pool failed with a capacity error.
//   - DEGRADED: something is wrong now: an open or half-open breaker on
//     one candidate, a ready worker with a stale heartbeat, or failures in
//     the last 10 minutes with no worker started successfully since.
//   - HEALTHY: otherwise. Failures older than that, followed by a worker
//     that reached ready, are reported as "recovered" and stay in the
//     failure timeline.
//
// # Health labels
//
// HEALTHY: ready, heartbeat within two intervals. INITIALIZING: requested,
// provisioning or booting (not yet expected to beat). STALE: ready but the
// last heartbeat is older than two intervals. DRAINING: draining.
// TERMINATING and FAILED (class) for rows on their way out.
package status
