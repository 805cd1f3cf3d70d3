-- Heartbeats: ARGV = P, lease_until, then pairs of id and claims. Extends the lease of each
-- claim still held (the job running, not claimed again since). Returns the ids held.
local lease_until = ARGV[2]
local held = {}
for i = 3, #ARGV, 2 do
    local id, claims = ARGV[i], ARGV[i + 1]
    local v = redis.call('HMGET', job_key(id), 'state', 'claims')
    if v[1] == 'running' and v[2] == claims then
        change(id, { leased_until = lease_until })
        table.insert(held, id)
    end
end
return held
