-- Progress as ONE row per user: every mission's state of a user in one JSON document, so
-- that a batch reads and writes each of its users once, however many missions their events
-- touch. One row per (mission, user) cost a B-tree write per pair (5 to 15 per event) and
-- scattered a user's rows over as many pages as there were missions (docs/BENCHMARKS.md).
--
-- `missions` is a JSON object: mission id -> {"state": ProgressState, "updated_at": RFC 3339}.
CREATE TABLE user_progress (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    missions   TEXT NOT NULL,
    -- Bumped by every write: a batch prepared on a snapshot commits only if its users'
    -- versions are still those it read.
    version    INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
) WITHOUT ROWID;

-- json() keeps each number's text as written, so decimals keep every digit and their scale.
INSERT INTO user_progress (tenant_id, user_id, missions, version, updated_at)
SELECT tenant_id, user_id,
       json_group_object(mission_id, json_object('state', json(state), 'updated_at', updated_at)),
       1,
       max(updated_at)
FROM (SELECT * FROM progress ORDER BY tenant_id, user_id, mission_id)
GROUP BY tenant_id, user_id;

DROP TABLE progress;
