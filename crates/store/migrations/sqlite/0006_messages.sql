-- Messages to users (API.md, "Messages and providers"): one row per message, its document
-- (what to send, its attempts, its booked slot) as JSON; the status beside it for reads.
CREATE TABLE messages (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL,
    status      TEXT NOT NULL,
    doc         TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Messages sent per provider per calendar month (UTC): commitments and capacities are
-- monthly, and the router ranks by them. Providers are the deployment's, not a tenant's.
CREATE TABLE provider_usage (
    provider TEXT NOT NULL,
    month    TEXT NOT NULL,
    sent     INTEGER NOT NULL,
    PRIMARY KEY (provider, month)
);

-- A key role for sending messages, `send` (SQLite cannot change a CHECK in place: the table
-- is rebuilt with the same columns and rows).
CREATE TABLE api_keys_new (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'ingest', 'read', 'send')),
    -- SHA-256 of the secret, hex. Secrets are 256-bit random, so a fast hash is enough.
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    PRIMARY KEY (tenant_id, id)
);
INSERT INTO api_keys_new (tenant_id, id, name, role, secret_hash, created_at, last_used_at)
SELECT tenant_id, id, name, role, secret_hash, created_at, last_used_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
