// Package core holds Drover's domain types: tasks, workers, events, breaker
// state, failure classes, error codes and the injected Clock. It imports
// nothing else from Drover, so every other package can depend on it.
//
// # Task state model
//
//	queued ──claim──▶ running ──complete──▶ succeeded
//	  ▲                 │ fail (retryable, attempts left) ──▶ queued (run_after = backoff)
//	  │                 │ fail (final, or attempts exhausted) ──▶ failed
//	  └── lease lost ───┘ (worker died / drained / timed out)  ──▶ queued, or failed when lost too often
//	queued|running ──cancel──▶ cancelled
//
// Handler failures count against MaxAttempts; losses of the worker while the
// task runs count against MaxLost, so a task that kills its worker ends failed
// instead of looping forever.
//
// # Worker state model
//
//	requested ─create ok─▶ provisioning ─running─▶ booting ─first heartbeat─▶ ready
//	ready ──scale-down──▶ draining ──idle or drain_timeout──▶ terminating ──gone──▶ terminated
//	any live state ──failure (with a FailureClass)──▶ failed ──▶ terminating ──▶ terminated
//
// Only the orchestrator writes worker state; agents report facts.
package core
