-- Drover schema, PostgreSQL edition. The SQLite store mirrors it.
-- JSON columns use json (not jsonb) so documents come back byte for byte
-- as they were written, exactly as on SQLite.

CREATE TABLE tasks (
    id               uuid PRIMARY KEY,
    type             text NOT NULL,
    params           json NOT NULL,
    owner            text NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    pool             text NOT NULL,
    depends_on       uuid[] NOT NULL DEFAULT '{}',
    max_attempts     integer NOT NULL,
    max_lost         integer NOT NULL,
    timeout_ms       bigint NOT NULL,
    idempotency_key  text,
    state            text NOT NULL,
    attempt          integer NOT NULL DEFAULT 0,
    failures         integer NOT NULL DEFAULT 0,
    lost             integer NOT NULL DEFAULT 0,
    deps_pending     integer NOT NULL DEFAULT 0,
    worker_id        uuid,
    lease_token      uuid,
    lease_expires_at timestamptz,
    result           json,
    error            text NOT NULL DEFAULT '',
    progress         double precision,
    progress_msg     text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    run_after        timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT tasks_state_check CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled'))
) WITH (
    -- Room on each page for the new row versions of claims and completions.
    fillfactor = 80,
    -- A queue table churns: every task is updated at least twice. Vacuum
    -- early so dead index entries do not pile up at the head of tasks_claim
    -- (claims walk past them). This needs autovacuum on, as it is by default.
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05
);

CREATE UNIQUE INDEX tasks_owner_idempotency_key ON tasks (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_claim ON tasks (pool, priority DESC, created_at, id)
    WHERE state = 'queued';
CREATE INDEX tasks_queued_created ON tasks (created_at)
    WHERE state = 'queued';
-- Running-set indexes: by worker (leases, worker lists, lost workers; also
-- scanned whole for lease expiry and timeouts, since the running set is
-- bounded by the fleet's concurrency) and by owner (owner-limited claims
-- count an owner's running tasks). Every index costs an insert on each
-- claim (these updates are never HOT: state is in the partial predicates),
-- so there are no more of them.
CREATE INDEX tasks_running ON tasks (worker_id)
    WHERE state = 'running';
CREATE INDEX tasks_running_owner ON tasks (owner)
    WHERE state = 'running';
CREATE INDEX tasks_created ON tasks (created_at DESC, id DESC);

CREATE TABLE task_deps (
    task_id uuid NOT NULL,
    dep_id  uuid NOT NULL,
    PRIMARY KEY (task_id, dep_id)
);
CREATE INDEX task_deps_dep ON task_deps (dep_id);

CREATE TABLE owners (
    owner text PRIMARY KEY
);

CREATE TABLE workers (
    id                uuid PRIMARY KEY,
    pool              text NOT NULL,
    provider          text NOT NULL,
    placement         text NOT NULL DEFAULT '',
    gpu_type          text NOT NULL DEFAULT '',
    region            text NOT NULL DEFAULT '',
    instance_id       text NOT NULL DEFAULT '',
    state             text NOT NULL,
    failure           text NOT NULL DEFAULT '',
    reason            text NOT NULL DEFAULT '',
    token_hash        text NOT NULL DEFAULT '',
    concurrency       integer NOT NULL DEFAULT 1,
    price_per_hour    double precision NOT NULL DEFAULT 0,
    agent_version     text NOT NULL DEFAULT '',
    gpus              json,
    metrics           json,
    tasks_done        integer NOT NULL DEFAULT 0,
    tasks_failed      integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    state_changed_at  timestamptz NOT NULL,
    ready_at          timestamptz,
    last_heartbeat_at timestamptz,
    last_task_at      timestamptz,
    terminated_at     timestamptz,
    delete_attempts   integer NOT NULL DEFAULT 0,
    missing_lists     integer NOT NULL DEFAULT 0
);
CREATE INDEX workers_state ON workers (state);

CREATE TABLE events (
    id        bigserial PRIMARY KEY,
    time      timestamptz NOT NULL,
    kind      text NOT NULL,
    pool      text NOT NULL DEFAULT '',
    worker_id text NOT NULL DEFAULT '',
    task_id   text NOT NULL DEFAULT '',
    message   text NOT NULL DEFAULT '',
    data      json
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_task ON events (task_id) WHERE task_id <> '';
CREATE INDEX events_worker ON events (worker_id) WHERE worker_id <> '';

CREATE TABLE logs (
    id        bigserial PRIMARY KEY,
    time      timestamptz NOT NULL,
    worker_id text NOT NULL DEFAULT '',
    task_id   text NOT NULL DEFAULT '',
    stream    text NOT NULL DEFAULT '',
    line      text NOT NULL DEFAULT ''
);
CREATE INDEX logs_time ON logs (time);
CREATE INDEX logs_task ON logs (task_id, id);
CREATE INDEX logs_worker ON logs (worker_id, id);

CREATE TABLE breakers (
    key        text PRIMARY KEY,
    state      json NOT NULL,
    updated_at timestamptz NOT NULL
);

-- River's single-row leader lease.
CREATE TABLE leader (
    name       text PRIMARY KEY DEFAULT 'default' CHECK (name = 'default'),
    leader_id  text NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE kv (
    key        text PRIMARY KEY,
    value      json NOT NULL,
    updated_at timestamptz NOT NULL
);
