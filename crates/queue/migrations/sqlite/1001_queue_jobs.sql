-- The job queue's table (crate questline-queue). Queue migrations are numbered from 1001,
-- apart from the store's own, in the same _sqlx_migrations table.
-- Instants are INTEGER microseconds since the Unix epoch; JSON is TEXT.

CREATE TABLE queue_jobs (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN
                          ('scheduled', 'available', 'running', 'retrying', 'succeeded', 'cancelled', 'dead')),
    attempt           INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    priority          INTEGER NOT NULL,
    -- JSON [{"at", "attempt", "error"}]: every failed attempt.
    errors            TEXT NOT NULL,
    unique_key        TEXT,
    concurrency_key   TEXT,
    concurrency_limit INTEGER,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    -- Times claimed: the fencing token of a claim.
    claims            INTEGER NOT NULL,
    -- Times its worker died holding it.
    crashes           INTEGER NOT NULL,
    leased_until      INTEGER
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
