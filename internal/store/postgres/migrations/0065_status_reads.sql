-- Status, why and the events page at a million tasks and events (issue 10).
--
-- The events page and GET /v1/events filtered by kind read newest first by
-- id: a backward range of (kind, id), never a walk of the whole log for a
-- rare kind (events_kind_time serves status's time windows).
CREATE INDEX events_kind_id ON events (kind, id);
