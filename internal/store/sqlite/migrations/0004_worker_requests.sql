-- Requests to change a worker's state, written by the components that are
-- not the orchestrator (the API for operator drain/terminate, the queue for
-- registration facts such as gpu-missing). The orchestrator, the only
-- writer of worker state, applies them in its next tick, records an event
-- for each and deletes them. One pending request per worker: a later one
-- replaces it.
CREATE TABLE worker_requests (
    worker_id    TEXT    NOT NULL PRIMARY KEY,
    action       TEXT    NOT NULL,
    failure      TEXT    NOT NULL DEFAULT '',
    reason       TEXT    NOT NULL DEFAULT '',
    requested_by TEXT    NOT NULL DEFAULT '',
    requested_at INTEGER NOT NULL
);
