-- Messages to users (API.md, "Messages and providers"): one row per message, its document
-- (what to send, its attempts, its booked slot) as JSON; the status beside it for reads.
CREATE TABLE messages (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id          TEXT COLLATE "C" NOT NULL,
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
    sent     BIGINT NOT NULL,
    PRIMARY KEY (provider, month)
);

-- A key role for sending messages, `send`.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN ('admin', 'ingest', 'read', 'send'));
