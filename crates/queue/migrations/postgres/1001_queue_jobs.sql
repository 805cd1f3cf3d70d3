-- The job queue's table (crate questline-queue). Queue migrations are numbered from 1001,
-- apart from the store's own, in the same _sqlx_migrations table.
-- Instants are BIGINT microseconds since the Unix epoch; JSON is TEXT, as on SQLite, so that
-- one set of statements serves both.

CREATE TABLE queue_jobs (
    -- Bytewise order whatever the locale: pages go by id.
    id                TEXT COLLATE "C" PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN
                          ('scheduled', 'available', 'running', 'retrying', 'succeeded', 'cancelled', 'dead')),
    attempt           BIGINT NOT NULL,
    max_attempts      BIGINT NOT NULL,
    run_at            BIGINT NOT NULL,
    priority          BIGINT NOT NULL,
    -- JSON [{"at", "attempt", "error"}]: every failed attempt.
    errors            TEXT NOT NULL,
    unique_key        TEXT,
    concurrency_key   TEXT,
    concurrency_limit BIGINT,
    created_at        BIGINT NOT NULL,
    finished_at       BIGINT,
    -- Times claimed: the fencing token of a claim.
    claims            BIGINT NOT NULL,
    -- Times its worker died holding it.
    crashes           BIGINT NOT NULL,
    leased_until      BIGINT
);

-- What a claim scans: only waiting jobs, in claim order.
CREATE INDEX queue_jobs_waiting ON queue_jobs (priority, run_at, id)
    WHERE state IN ('scheduled', 'available', 'retrying');
-- Running jobs: lapsed leases (rescue) and running counts per concurrency key (claim).
CREATE INDEX queue_jobs_running ON queue_jobs (leased_until) WHERE state = 'running';
-- A unique key is held only while its job is unfinished.
CREATE UNIQUE INDEX queue_jobs_unique ON queue_jobs (tenant_id, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'retrying');
-- Pruning.
CREATE INDEX queue_jobs_finished ON queue_jobs (finished_at) WHERE finished_at IS NOT NULL;
