-- Task outputs: the verified files of the attempt that succeeded, recorded
-- in the same transaction as the completion (at most one set per task).
-- Rows outlive their task row until expires_at, when the outputs janitor
-- deletes the object and then the row.
CREATE TABLE task_outputs (
    task_id      uuid        NOT NULL,
    name         text        NOT NULL,
    attempt      integer     NOT NULL,
    size         bigint      NOT NULL,
    sha256       text        NOT NULL,
    content_type text        NOT NULL,
    blob_key     text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (task_id, name)
);
CREATE INDEX task_outputs_expires ON task_outputs (expires_at);
