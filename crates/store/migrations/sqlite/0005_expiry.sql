-- Points and coins that expire (API.md, "Settlement"): a reward carries how long its credit
-- lasts; a credit entry when it expires; an expiry's entry which credit's rest it took back;
-- and a credit the expiry sweep has dealt with is marked, so that it is looked at once.
ALTER TABLE rewards ADD COLUMN expires_after TEXT;
ALTER TABLE balance_entries ADD COLUMN expires_at TEXT;
ALTER TABLE balance_entries ADD COLUMN expiry_of TEXT;
ALTER TABLE balance_entries ADD COLUMN expired_at TEXT;
-- What the sweep has still to look at, soonest first.
CREATE INDEX balance_entries_expiring ON balance_entries (tenant_id, expires_at)
    WHERE expires_at IS NOT NULL AND expired_at IS NULL;
-- A credit's rest is taken back once.
CREATE UNIQUE INDEX balance_entries_expiry_once ON balance_entries (tenant_id, expiry_of)
    WHERE expiry_of IS NOT NULL;
