-- Periodic schedules: the last tick each one enqueued. A tick is enqueued by whoever moves
-- `last_tick` forward first, in the same transaction as its job, so each tick runs once
-- however many workers hold the schedule.
CREATE TABLE queue_periodic (
    name      TEXT COLLATE "C" PRIMARY KEY,
    -- Microseconds since the Unix epoch.
    last_tick BIGINT NOT NULL
);
