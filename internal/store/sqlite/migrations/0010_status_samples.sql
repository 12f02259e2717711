-- Status, why and the dashboard (issue 10).
--
-- samples: the leader's small time series behind the dashboard's charts,
-- one row per pool per sample (pool '_all' is the fleet), pruned by
-- retention.
CREATE TABLE samples (
    time           INTEGER NOT NULL,
    pool           TEXT    NOT NULL,
    queued         INTEGER NOT NULL DEFAULT 0,
    claimable      INTEGER NOT NULL DEFAULT 0,
    running        INTEGER NOT NULL DEFAULT 0,
    requested      INTEGER NOT NULL DEFAULT 0,
    provisioning   INTEGER NOT NULL DEFAULT 0,
    booting        INTEGER NOT NULL DEFAULT 0,
    ready          INTEGER NOT NULL DEFAULT 0,
    draining       INTEGER NOT NULL DEFAULT 0,
    terminating    INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    succeeded      INTEGER NOT NULL DEFAULT 0,
    tasks_failed   INTEGER NOT NULL DEFAULT 0,
    spend_per_hour REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (time, pool)
);

-- why and the events page read one task's, worker's or pool's events
-- newest first: an index range in id order, never a scan. The old partial
-- indexes (WHERE task_id <> '') could not serve "task_id = $1": a planner
-- cannot prove a bound parameter is not '' (SQLite scanned the table).
DROP INDEX events_task;
DROP INDEX events_worker;
CREATE INDEX events_task_id ON events (task_id, id);
CREATE INDEX events_worker_id ON events (worker_id, id);
CREATE INDEX events_pool_id ON events (pool, id);
-- status reads the failures and starts of the breaker window by kind.
CREATE INDEX events_kind_time ON events (kind, time);
