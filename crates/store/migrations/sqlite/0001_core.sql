-- questline core schema (SQLite). Every row carries the tenant (app) it belongs to.
-- Instants used for ordering are INTEGER microseconds since the Unix epoch; instants only
-- shown to people are RFC 3339 TEXT.

CREATE TABLE tenants (
    id                TEXT PRIMARY KEY,
    -- Bumped on every change to a mission, so that every process can tell when its cached
    -- index of active missions is stale.
    missions_revision INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL
);
INSERT INTO tenants (id, created_at) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

CREATE TABLE api_keys (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'ingest', 'read')),
    -- SHA-256 of the secret, hex. Secrets are 256-bit random, so a fast hash is enough.
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE missions (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    id              TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'ended')),
    -- The MissionSpec as JSON.
    spec            TEXT NOT NULL,
    max_rewards     INTEGER,
    rewards_granted INTEGER NOT NULL DEFAULT 0,
    activated_at    TEXT,
    -- JSON [{"from", "until"}]: when it was active. Events count only if received then.
    active_periods  TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX missions_by_status ON missions (tenant_id, status, id);

-- The ledger: every event ever accepted, once. Its primary key is what makes delivery
-- idempotent; its payload is what progress is recomputed from.
CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    attributes  TEXT NOT NULL,
    reverses    TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX events_by_user ON events (tenant_id, user_id, type, occurred_at) WHERE reverses IS NULL;
CREATE INDEX events_by_reversed ON events (tenant_id, reverses) WHERE reverses IS NOT NULL;

CREATE TABLE progress (
    tenant_id   TEXT NOT NULL,
    mission_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    -- The core ProgressState as JSON.
    state       TEXT NOT NULL,
    completions INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, mission_id, user_id)
) WITHOUT ROWID;
CREATE INDEX progress_by_user ON progress (tenant_id, user_id);

CREATE TABLE rewards (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL,
    mission_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    completion INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    amount     TEXT,
    currency   TEXT,
    code       TEXT,
    name       TEXT,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'granted', 'revoked', 'failed')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX rewards_by_user ON rewards (tenant_id, user_id, created_at);
-- At most one live reward per completion.
CREATE UNIQUE INDEX rewards_live ON rewards (tenant_id, mission_id, user_id, completion) WHERE status <> 'revoked';
