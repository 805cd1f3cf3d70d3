-- Webhooks (API.md, "Webhooks"): a tenant's endpoints, the events each subscribes to and how
-- its deliveries are retried. The secret is stored sealed (encrypted by the service with a
-- key from configuration, never here in the clear): a dump of this table does not reveal it.
CREATE TABLE webhooks (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    id               TEXT NOT NULL,
    url              TEXT NOT NULL,
    -- JSON array of event types.
    events           TEXT NOT NULL,
    -- 1 when `events` holds reward.fulfil: at most one such endpoint per tenant.
    fulfils          INTEGER NOT NULL CHECK (fulfils IN (0, 1)),
    max_attempts     INTEGER NOT NULL,
    retry_initial_ms INTEGER NOT NULL,
    retry_max_ms     INTEGER NOT NULL,
    sealed_secret    TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX webhooks_one_fulfilment ON webhooks (tenant_id) WHERE fulfils = 1;
