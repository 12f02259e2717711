-- Completion webhooks: the callback URL of each unfinished task, moved to
-- the delivery outbox once the task is final (see store.WebhookStore).
CREATE TABLE webhook_callbacks (
    task_id uuid PRIMARY KEY,
    url     text NOT NULL
);
CREATE TABLE webhook_deliveries (
    id         text        PRIMARY KEY,
    task_id    uuid        NOT NULL,
    url        text        NOT NULL,
    state      text        NOT NULL,
    status     text        NOT NULL,
    attempts   integer     NOT NULL,
    next_at    timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    last_error text        NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at);
