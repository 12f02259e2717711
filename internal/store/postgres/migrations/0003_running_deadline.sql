-- TaskTimeoutRunning runs every tick: find the attempts past their deadline
-- by an index range instead of reading every running row.
--
-- started_at + timeout_ms * interval '1 millisecond' cannot be indexed as
-- written: timestamptz + interval is only STABLE (an interval with days or
-- months depends on the session time zone). An interval of milliseconds
-- has neither, so this wrapper is truly immutable and its result never
-- depends on a setting. The SQL query uses the same call, so the planner
-- matches it to the index expression.
CREATE FUNCTION drover_task_deadline(started timestamptz, timeout_ms bigint)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN started + timeout_ms * interval '1 millisecond';

CREATE INDEX tasks_running_deadline ON tasks (drover_task_deadline(started_at, timeout_ms))
    WHERE state = 'running';
