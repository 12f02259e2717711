// Package runpod is the provider that rents GPU pods from RunPod through its
// REST v2 API (https://api.runpod.io/v2): create, get, list, delete and the
// GPU catalog, with typed error classification, retries where RunPod's
// retry table allows them and a client-side rate limiter that follows the
// RateLimit / RateLimit-Policy headers.
//
// # Pod states
//
// A pod's v2 status maps onto Drover's instance states:
//
//	PROVISIONING, STARTING ──▶ pending   (provisioning / booting)
//	RUNNING                ──▶ running   (readiness is still the agent's first heartbeat:
//	                                      v2 says RUNNING before the container is reachable)
//	EXITED, ERROR          ──▶ gone, Exited (the agent's container stopped: agent-exit)
//	TERMINATED, 404        ──▶ gone
//
// # Ownership
//
// Every pod is named drover-<cluster>-<worker id> and carries
// DROVER_CLUSTER=<cluster> and DROVER_POOL=<pool> in its env. List returns
// only pods with both marks, so a second Drover on the same RunPod account
// neither sees nor deletes them, and orphans are matched back to worker rows
// by the id in the name.
//
// # Errors
//
// RunPod answers errors as RFC 9457 problem documents. They are classified
// into provider kinds: a 400 saying no instances are available is capacity
// (the orchestrator tries the next candidate in the same tick); 402
// (balance) and 401 (key) are quota for the whole account; 403 is quota for
// that candidate; 422 is invalid-request with RunPod's errors[] quoted; 404
// is not-found; 429 is retried after Retry-After; 5xx and timeouts are
// retried with jittered backoff. The API key never appears in an error, a
// log line or an event.
package runpod
