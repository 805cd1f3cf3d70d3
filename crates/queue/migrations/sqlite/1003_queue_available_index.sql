-- Claims scan only available jobs: a claim first makes the scheduled and retrying jobs that
-- are due available (through queue_jobs_timed), so a backlog of delayed jobs (rewards on a
-- hold, backoffs) is never walked past by the pick.
DROP INDEX queue_jobs_waiting;
CREATE INDEX queue_jobs_available ON queue_jobs (priority, run_at, id) WHERE state = 'available';
CREATE INDEX queue_jobs_timed ON queue_jobs (run_at) WHERE state IN ('scheduled', 'retrying');
