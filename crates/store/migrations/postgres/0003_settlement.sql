-- Settlement (API.md, "Settlement", "Balances and entitlements"): a reward's hold and what
-- settling it did, the balance ledger of points and coins, and entitlements.

-- Rows written before holds existed were earned without one: settled from their creation.
ALTER TABLE rewards ADD COLUMN hold_until TEXT COLLATE "C";
ALTER TABLE rewards ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rewards ADD COLUMN settled_at TEXT COLLATE "C";
ALTER TABLE rewards ADD COLUMN failure TEXT;
UPDATE rewards SET hold_until = created_at;
-- What is still to settle, soonest first.
CREATE INDEX rewards_to_settle ON rewards (tenant_id, hold_until) WHERE status = 'pending';

-- A balance is the sum of its entries, kept beside them so that a debit checks it under
-- one row lock; amounts are decimal text (every digit and the scale).
CREATE TABLE balances (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    currency   TEXT COLLATE "C" NOT NULL,
    balance    TEXT NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, user_id, currency)
);

CREATE TABLE balance_entries (
    tenant_id       TEXT COLLATE "C" NOT NULL,
    id              TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    currency        TEXT COLLATE "C" NOT NULL,
    amount          TEXT NOT NULL,
    balance_after   TEXT NOT NULL,
    reason          TEXT NOT NULL,
    -- The reward a settlement entry is for: at most one entry per reward.
    reward_id       TEXT COLLATE "C",
    idempotency_key TEXT COLLATE "C",
    created_at      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX balance_entries_by_balance ON balance_entries (tenant_id, user_id, currency, id);
CREATE UNIQUE INDEX balance_entries_once ON balance_entries (tenant_id, user_id, currency, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX balance_entries_of_reward ON balance_entries (tenant_id, reward_id) WHERE reward_id IS NOT NULL;

CREATE TABLE entitlements (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    code       TEXT COLLATE "C" NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('badge', 'unlock')),
    mission_id TEXT COLLATE "C",
    reward_id  TEXT COLLATE "C",
    granted_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, user_id, code)
);
