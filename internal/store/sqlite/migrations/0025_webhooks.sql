-- Completion webhooks: the callback URL of each unfinished task, moved to
-- the delivery outbox once the task is final (see store.WebhookStore).
CREATE TABLE webhook_callbacks (
    task_id TEXT PRIMARY KEY,
    url     TEXT NOT NULL
);
CREATE TABLE webhook_deliveries (
    id         TEXT    PRIMARY KEY,
    task_id    TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    next_at    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_error TEXT    NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at);
