// Package agent is the worker agent (`drover agent`): it runs on each worker
// machine, registers with the server (reporting the GPU inventory found by
// nvidia-smi), heartbeats, long-polls for tasks, runs one handler process
// per task and reports each outcome under the task's lease. It talks to the
// server only through the HTTP API (package client): a worker holds a URL
// and its own token, never database credentials.
//
// # Agent state machine
//
//	registering ──ok──▶ working ──drain (SIGTERM or heartbeat reply)──▶ draining ──no tasks──▶ exit 0
//	     │                 │                                               │
//	     │ 4xx             │ stop (heartbeat reply) / 401·403·404          │ stop
//	     ▼                 ▼                                               ▼
//	  exit 1            stopping: handlers get SIGTERM, then SIGKILL; finished
//	                    handlers are reported once; exit
//
// While working, the agent claims whenever a slot is free (concurrency from
// the register reply or --concurrency). A server that cannot be reached is
// retried with exponential backoff; running handlers keep running meanwhile
// and their leases stay in every heartbeat. A lease the server reports lost
// (task cancelled, timed out or requeued elsewhere) kills that handler and
// nothing is reported for it; a 409 on complete or fail drops the outcome.
//
// # Handler contract
//
// See docs/agent.md. In short: `sh -c CMD`, params JSON on stdin,
// DROVER_TASK_ID, DROVER_TASK_TYPE, DROVER_ATTEMPT and DROVER_RESULT_FILE in
// the environment (DROVER_TOKEN is removed); the result is the JSON object
// in $DROVER_RESULT_FILE, else the last non-empty stdout line if it is a
// JSON object, else {}; exit 3 is a final failure, any other non-zero exit
// a retryable one; stdout/stderr lines become task logs.
package agent
