-- The Redis lane's outbox (crate questline-queue): a job for Redis born inside a SQL unit of
-- work is written here, in that unit; a relay (queue::outbox) moves committed rows to Redis
-- and deletes them. A rolled-back unit leaves no row, so nothing is sent for it; a row stays
-- until Redis has its job, so nothing is lost up to Redis. Instants are microseconds since
-- the Unix epoch, as in queue_jobs.
CREATE TABLE queue_outbox (
    -- The job's id, made at enqueue: a row relayed twice finds the job it made the first time.
    -- Ids are UUID v7, so the relay's order by id is the order of enqueueing.
    id                TEXT COLLATE "C" PRIMARY KEY,
    -- The Redis namespace (RedisQueue's prefix) the job is for.
    namespace         TEXT NOT NULL,
    tenant_id         TEXT NOT NULL,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    run_at            BIGINT NOT NULL,
    priority          BIGINT NOT NULL,
    max_attempts      BIGINT NOT NULL,
    unique_key        TEXT,
    concurrency_key   TEXT,
    concurrency_limit BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX queue_outbox_namespace ON queue_outbox (namespace, id);
