-- How each user is reached and what they agreed to hear (contact points, time zone,
-- opt-outs, quiet hours): one row per user, its document as JSON. Mission notifications
-- read it when they are sent (service/src/notices.rs).
CREATE TABLE user_contacts (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    user_id     TEXT NOT NULL,
    doc         TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
