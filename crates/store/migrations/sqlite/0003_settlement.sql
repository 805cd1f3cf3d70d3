-- Settlement (API.md, "Settlement", "Balances and entitlements"): a reward's hold and what
-- settling it did, the balance ledger of points and coins, and entitlements.

-- Rows written before holds existed were earned without one: settled from their creation.
ALTER TABLE rewards ADD COLUMN hold_until TEXT;
ALTER TABLE rewards ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rewards ADD COLUMN settled_at TEXT;
ALTER TABLE rewards ADD COLUMN failure TEXT;
UPDATE rewards SET hold_until = created_at;
-- What is still to settle, soonest first.
CREATE INDEX rewards_to_settle ON rewards (tenant_id, hold_until) WHERE status = 'pending';

-- A balance is the sum of its entries, kept beside them so that a debit checks it under
-- one row lock; amounts are decimal text (every digit and the scale).
CREATE TABLE balances (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    currency   TEXT NOT NULL,
    balance    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, currency)
);

CREATE TABLE balance_entries (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    currency        TEXT NOT NULL,
    amount          TEXT NOT NULL,
    balance_after   TEXT NOT NULL,
    reason          TEXT NOT NULL,
    -- The reward a settlement entry is for: at most one entry per reward.
    reward_id       TEXT,
    idempotency_key TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX balance_entries_by_balance ON balance_entries (tenant_id, user_id, currency, id);
CREATE UNIQUE INDEX balance_entries_once ON balance_entries (tenant_id, user_id, currency, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX balance_entries_of_reward ON balance_entries (tenant_id, reward_id) WHERE reward_id IS NOT NULL;

CREATE TABLE entitlements (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    code       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('badge', 'unlock')),
    mission_id TEXT,
    reward_id  TEXT,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, code)
);
