-- Status, why and the dashboard (issue 10).
--
-- samples: the leader's small time series behind the dashboard's charts,
-- one row per pool per sample (pool '_all' is the fleet), pruned by
-- retention.
CREATE TABLE samples (
    time           timestamptz NOT NULL,
    pool           text NOT NULL,
    queued         integer NOT NULL DEFAULT 0,
    claimable      integer NOT NULL DEFAULT 0,
    running        integer NOT NULL DEFAULT 0,
    requested      integer NOT NULL DEFAULT 0,
    provisioning   integer NOT NULL DEFAULT 0,
    booting        integer NOT NULL DEFAULT 0,
    ready          integer NOT NULL DEFAULT 0,
    draining       integer NOT NULL DEFAULT 0,
    terminating    integer NOT NULL DEFAULT 0,
    failed         integer NOT NULL DEFAULT 0,
    succeeded      integer NOT NULL DEFAULT 0,
    tasks_failed   integer NOT NULL DEFAULT 0,
    spend_per_hour double precision NOT NULL DEFAULT 0,
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
-- status counts the tasks finished in the last hour (and the leader's
-- samples those since the previous sample): an index range, not a scan.
CREATE INDEX tasks_finished ON tasks (finished_at, state) WHERE finished_at IS NOT NULL;
