-- questline core schema (PostgreSQL): the same tables, columns and keys as the SQLite schema,
-- so that both backends behave alike. Every row carries the tenant (app) it belongs to.
--
-- Instants used for ordering are BIGINT microseconds since the Unix epoch. Instants only
-- shown to people are RFC 3339 TEXT with nine fractional digits (see sqlite/rows.rs): not
-- TIMESTAMPTZ, which keeps microseconds and would lose the nanoseconds the API accepts.
-- JSON payloads are TEXT, not jsonb: jsonb rewrites numbers (0.30 becomes 0.3) and reorders
-- keys, and the ledger must give back exactly what it was sent.
--
-- Identifiers and instants are COLLATE "C": byte order, as in SQLite, whatever the
-- database's locale. Pagination (`id > $after ORDER BY id`), the fold order `(occurred_at,
-- id)` and `ORDER BY created_at` must not depend on how a locale sorts punctuation.

CREATE TABLE tenants (
    id                TEXT COLLATE "C" PRIMARY KEY,
    -- Bumped on every change to a mission, so that every process can tell when its cached
    -- index of active missions is stale.
    missions_revision BIGINT NOT NULL DEFAULT 0,
    created_at        TEXT COLLATE "C" NOT NULL
);
INSERT INTO tenants (id, created_at)
VALUES ('default', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"000Z"'));

CREATE TABLE api_keys (
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id           TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'ingest', 'read')),
    -- SHA-256 of the secret, hex. Secrets are 256-bit random, so a fast hash is enough.
    secret_hash  TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at   TEXT COLLATE "C" NOT NULL,
    last_used_at TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE missions (
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id              TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'ended')),
    -- The MissionSpec as JSON.
    spec            TEXT NOT NULL,
    max_rewards     BIGINT,
    rewards_granted BIGINT NOT NULL DEFAULT 0,
    activated_at    TEXT COLLATE "C",
    -- JSON [{"from", "until"}]: when it was active. Events count only if received then.
    active_periods  TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX missions_by_status ON missions (tenant_id, status, id);

-- The ledger: every event ever accepted, once. Its primary key is what makes delivery
-- idempotent, across processes too (INSERT ... ON CONFLICT DO NOTHING waits for a
-- concurrent insert of the same id to commit or roll back); its payload is what progress is
-- recomputed from.
CREATE TABLE events (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    type        TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    occurred_at BIGINT NOT NULL,
    attributes  TEXT NOT NULL,
    reverses    TEXT COLLATE "C",
    received_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_by_user ON events (tenant_id, user_id, type, occurred_at) WHERE reverses IS NULL;
CREATE INDEX events_by_reversed ON events (tenant_id, reverses) WHERE reverses IS NOT NULL;

CREATE TABLE progress (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    mission_id  TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    -- The core ProgressState as JSON.
    state       TEXT NOT NULL,
    completions BIGINT NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, mission_id, user_id)
);
CREATE INDEX progress_by_user ON progress (tenant_id, user_id);

CREATE TABLE rewards (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    mission_id TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    completion BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    -- Decimal text, as the SQLite backend stores it: every digit and the scale ("0.30").
    amount     TEXT,
    currency   TEXT,
    code       TEXT,
    name       TEXT,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'granted', 'revoked', 'failed')),
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX rewards_by_user ON rewards (tenant_id, user_id, created_at);
-- At most one live reward per completion.
CREATE UNIQUE INDEX rewards_live ON rewards (tenant_id, mission_id, user_id, completion) WHERE status <> 'revoked';

-- Serializes ingest batches per user across processes (IngestTx::lock_users): one
-- transaction-scoped advisory lock per (tenant, user), released at commit or rollback.
-- The key is a stable 64-bit hash (hashtextextended is what hash partitioning relies on, so
-- it does not change across versions or processes). Locks are taken in KEY order, one by one:
-- every batch then acquires in the same global order and two batches cannot deadlock, even
-- when two users' keys collide (a collision only makes their batches queue).
CREATE FUNCTION questline_lock_users(tenant TEXT, users TEXT[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k BIGINT;
BEGIN
    FOR k IN
        SELECT DISTINCT hashtextextended(tenant || chr(31) || u, 0) FROM unnest(users) AS u ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;
