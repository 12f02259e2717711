// Package breaker is the per-placement circuit breaker (DESIGN §4): pure,
// clock-free functions over a *core.BreakerState that the orchestrator loads
// from and saves to the store. Every function takes "now" from the caller,
// so the breaker is deterministic under a fake clock and survives restarts
// exactly as persisted.
//
// # What is counted
//
// The breaker counts start outcomes of the workers of one placement key
// (pool/gpu/region): success is a worker that reached ready; failure is a
// worker that failed with a start-related class (see CountsAsStartFailure).
// Scale-down, drain, operator termination and task errors are never counted:
// the predecessor counted every terminated worker as a failure and blocked
// its own fleet (incidents I10, I14).
//
// # State machine
//
//	          Record: rate ≥ threshold (≥ min samples)
//	          or consecutive ≥ max_consecutive; Trip
//	closed ───────────────────────────────────────────▶ open (until = now + cooldown)
//	  ▲                                                  │ Allow at now ≥ until
//	  │ canary reached ready                             ▼
//	  │ (window reset, trips = 0)                    half-open ── exactly one canary
//	  └────────────────────────────────────────────────┤
//	                                                   │ canary failed
//	                                                   ▼
//	                                        open (cooldown doubled)
//
// The cooldown is Cooldown·2^trips, capped at MaxCooldown: 1m, 2m, 4m, … 30m
// with the defaults. Trip opens a key at once (quota and invalid-request
// failures, which no retry fixes, and the operator's "breaker open"); Reset
// closes it (the operator's "breaker reset").
//
// In half-open, Allow grants one canary (Verdict.Canary); the caller records
// the spawned worker with MarkCanary, and Allow refuses every other spawn
// until that worker's outcome is recorded. Outcomes of other workers of the
// key that arrive while it is open or half-open are kept in the window but
// do not move the state.
package breaker
