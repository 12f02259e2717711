-- status reads the start-up times of the breaker window from the workers
-- that reached ready in it (a range of ready_at), not from events.
CREATE INDEX workers_ready ON workers (ready_at);
