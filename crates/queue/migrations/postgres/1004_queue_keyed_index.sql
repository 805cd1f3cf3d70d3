-- Whether any available job has a concurrency key, in one probe: on PostgreSQL only claims
-- that may take such jobs queue on the claim lock; the others run side by side.
CREATE INDEX queue_jobs_keyed ON queue_jobs (kind) WHERE state = 'available' AND concurrency_key IS NOT NULL;
