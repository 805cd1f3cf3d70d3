-- Writes back jobs the state machine (`transition.rs`, in Rust) changed: ARGV = P, then per
-- job: id, the `rev` it was read at, n, n field/value pairs ('' deletes a field). A job is
-- written only if it is still at that `rev` (nothing changed it since it was read: a compare
-- and set), and, if it becomes unfinished with a unique key, only if no other unfinished job
-- holds that key. Returns per job: '1' written, '0' changed meanwhile (read it again), or the id
-- of the job holding its unique key.
local out = {}
local at = 2
local woken = false
while at <= #ARGV do
    local id, rev, n = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
    local _, set = read_fields(at + 3, n)
    at = at + 3 + 2 * n
    local key = job_key(id)
    local result = '0'
    if redis.call('HGET', key, 'rev') == rev then
        local v = redis.call('HMGET', key, 'tenant', 'ukey')
        local holder = nil
        if v[2] and UNFINISHED[set.state] then
            holder = redis.call('HGET', P .. 'unique', v[1] .. SEP .. v[2])
            if holder == id or (holder and redis.call('EXISTS', job_key(holder)) == 0) then
                holder = nil
            end
        end
        if holder then
            result = holder
        else
            change(id, set)
            result = '1'
            woken = woken or WAITING[set.state] or false
        end
    end
    table.insert(out, result)
end
if woken then
    wake()
end
return out
