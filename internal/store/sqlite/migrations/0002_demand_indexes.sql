-- Demand signal (TaskDemand) without scanning the backlog.
--
-- tasks_demand is a covering index for every queued-side lookup of
-- TaskDemand: the distinct pools and (pool, owner) pairs by loose index
-- scan, and per pair the ready tasks (deps_pending = 0, run_after <= now) as
-- one contiguous range, counted with a LIMIT.
CREATE INDEX tasks_demand ON tasks (pool, owner, deps_pending, run_after)
    WHERE state = 'queued';
-- The running set by owner and pool: owner-limited claims count an owner's
-- running tasks (owner prefix), TaskDemand counts per pool and owner. It
-- replaces tasks_running_owner, so claims maintain no extra index.
CREATE INDEX tasks_running_owner_pool ON tasks (owner, pool)
    WHERE state = 'running';
DROP INDEX tasks_running_owner;
-- WorkerList returns workers oldest first: read them in that order instead
-- of sorting 10,000 rows (which spills to a temporary file) every tick.
CREATE INDEX workers_created ON workers (created_at, id);
-- TaskTimeoutRunning runs every tick: find the attempts past their deadline
-- by a range of this expression index instead of reading every running row.
CREATE INDEX tasks_running_deadline ON tasks (started_at + timeout_ms * 1000)
    WHERE state = 'running';
