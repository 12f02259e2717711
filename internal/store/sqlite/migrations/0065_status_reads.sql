-- Status, why and the events page at a million tasks and events (issue 10).
--
-- The events page and GET /v1/events filtered by kind read newest first by
-- id: a backward range of (kind, id), never a walk of the whole log for a
-- rare kind (events_kind_time serves status's time windows).
CREATE INDEX events_kind_id ON events (kind, id);
-- The last-hour count of finished tasks by state reads the index alone
-- (the old index had no state: one table lookup per finished task).
CREATE INDEX tasks_finished_state ON tasks (finished_at, state) WHERE finished_at IS NOT NULL;
DROP INDEX tasks_finished;
