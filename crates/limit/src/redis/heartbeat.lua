-- One heartbeat: this process (ARGV[1]) seen now; processes unseen for ARGV[2] µs forgotten.
-- KEYS[1]: the registry, a sorted set of process ids scored by last-seen server time (µs).
-- Reply: the number of live processes.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stale = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - stale))
redis.call('PEXPIRE', KEYS[1], math.ceil(stale / 1000) * 2)
return redis.call('ZCARD', KEYS[1])
