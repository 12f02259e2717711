-- Task outputs: the verified files of the attempt that succeeded, recorded
-- in the same transaction as the completion (at most one set per task).
-- Rows outlive their task row until expires_at, when the outputs janitor
-- deletes the object and then the row.
CREATE TABLE task_outputs (
    task_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    blob_key     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (task_id, name)
);
CREATE INDEX task_outputs_expires ON task_outputs (expires_at);
