-- Drover schema for SQLite. Times are INTEGER unix microseconds (UTC), ids
-- and lease tokens are canonical UUID text, JSON is TEXT. It mirrors the
-- PostgreSQL schema column for column.

CREATE TABLE tasks (
    id               TEXT    NOT NULL PRIMARY KEY,
    type             TEXT    NOT NULL,
    params           TEXT    NOT NULL DEFAULT '{}',
    owner            TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    pool             TEXT    NOT NULL,
    max_attempts     INTEGER NOT NULL,
    max_lost         INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    idempotency_key  TEXT,
    state            TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    lost             INTEGER NOT NULL DEFAULT 0,
    deps_pending     INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    result           TEXT,
    error            TEXT    NOT NULL DEFAULT '',
    progress         REAL,
    progress_msg     TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    run_after        INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL
);

CREATE UNIQUE INDEX tasks_owner_idempotency_key ON tasks (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_claim ON tasks (pool, priority DESC, created_at, id) WHERE state = 'queued';
CREATE INDEX tasks_queued_created ON tasks (created_at) WHERE state = 'queued';
CREATE INDEX tasks_running_worker ON tasks (worker_id) WHERE state = 'running';
CREATE INDEX tasks_running_lease ON tasks (lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_running_owner ON tasks (owner) WHERE state = 'running';
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE task_deps (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    dep_id  TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX task_deps_dep ON task_deps (dep_id);

CREATE TABLE owners (
    owner TEXT NOT NULL PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE workers (
    id                TEXT    NOT NULL PRIMARY KEY,
    pool              TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    placement         TEXT    NOT NULL DEFAULT '',
    gpu_type          TEXT    NOT NULL DEFAULT '',
    region            TEXT    NOT NULL DEFAULT '',
    instance_id       TEXT    NOT NULL DEFAULT '',
    state             TEXT    NOT NULL,
    failure           TEXT    NOT NULL DEFAULT '',
    reason            TEXT    NOT NULL DEFAULT '',
    token_hash        TEXT    NOT NULL DEFAULT '',
    concurrency       INTEGER NOT NULL DEFAULT 1,
    price_per_hour    REAL    NOT NULL DEFAULT 0,
    agent_version     TEXT    NOT NULL DEFAULT '',
    gpus              TEXT,
    metrics           TEXT,
    tasks_done        INTEGER NOT NULL DEFAULT 0,
    tasks_failed      INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    state_changed_at  INTEGER NOT NULL,
    ready_at          INTEGER,
    last_heartbeat_at INTEGER,
    last_task_at      INTEGER,
    terminated_at     INTEGER,
    delete_attempts   INTEGER NOT NULL DEFAULT 0,
    missing_lists     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX workers_state ON workers (state);

CREATE TABLE events (
    id        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    time      INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    pool      TEXT    NOT NULL DEFAULT '',
    worker_id TEXT    NOT NULL DEFAULT '',
    task_id   TEXT    NOT NULL DEFAULT '',
    message   TEXT    NOT NULL DEFAULT '',
    data      TEXT
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_task ON events (task_id) WHERE task_id <> '';
CREATE INDEX events_worker ON events (worker_id) WHERE worker_id <> '';

CREATE TABLE logs (
    id        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    time      INTEGER NOT NULL,
    worker_id TEXT    NOT NULL DEFAULT '',
    task_id   TEXT    NOT NULL DEFAULT '',
    stream    TEXT    NOT NULL,
    line      TEXT    NOT NULL
);
CREATE INDEX logs_time ON logs (time);
CREATE INDEX logs_task ON logs (task_id, id);
CREATE INDEX logs_worker ON logs (worker_id, id);

CREATE TABLE breakers (
    key        TEXT    NOT NULL PRIMARY KEY,
    state      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE leader (
    name       TEXT    NOT NULL PRIMARY KEY DEFAULT 'default' CHECK (name = 'default'),
    leader_id  TEXT    NOT NULL,
    elected_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE kv (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
