-- Progress as ONE row per user: every mission's state of a user in one JSON document, so
-- that a batch reads, locks and writes each of its users once, however many missions their
-- events touch. One row per (mission, user) cost a B-tree write per pair (5 to 15 per
-- event), and the per-user advisory locks that serialized batches could exhaust the shared
-- lock table under load; the row lock on a user's row (`FOR UPDATE`) needs no lock slot.
--
-- `missions` is a JSON object: mission id -> {"state": ProgressState, "updated_at": RFC 3339}.
-- A fillfactor below 100 leaves room on each page for the new version of a row, so the
-- per-batch rewrite of a user's row can stay a HOT update (no index write).
CREATE TABLE user_progress (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    missions   TEXT NOT NULL,
    -- Bumped by every write: a batch prepared on a snapshot commits only if its users'
    -- versions are still those it read.
    version    BIGINT NOT NULL DEFAULT 0,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
) WITH (fillfactor = 80);

-- The json type (not jsonb) keeps each number's text as written: decimals keep every digit
-- and their scale.
INSERT INTO user_progress (tenant_id, user_id, missions, version, updated_at)
SELECT tenant_id, user_id,
       json_object_agg(mission_id, json_build_object('state', state::json, 'updated_at', updated_at)
                       ORDER BY mission_id)::text,
       1,
       max(updated_at)
FROM progress
GROUP BY tenant_id, user_id;

DROP TABLE progress;
DROP FUNCTION questline_lock_users(TEXT, TEXT[]);
