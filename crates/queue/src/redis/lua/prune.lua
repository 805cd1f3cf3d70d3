-- Prune: ARGV = P, finished_before, dead_before ('' keeps dead letters), limit. Deletes up to
-- `limit` succeeded and cancelled jobs finished before `finished_before`, then dead ones
-- finished before `dead_before`. Returns how many were deleted (the caller calls again
-- while a call deletes `limit`).
local limit = tonumber(ARGV[4])
local deleted = 0
local function prune(set, before)
    if before == '' or deleted >= limit then
        return
    end
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. set, '-inf', '(' .. before, 'LIMIT', 0, limit - deleted)) do
        local j = read_index(id)
        if j then
            index(j, false)
            redis.call('DEL', job_key(id))
        else
            redis.call('ZREM', P .. set, id)
        end
        redis.call('ZREM', P .. 'ids', id)
        deleted = deleted + 1
    end
end
prune('done', ARGV[2])
prune('dead', ARGV[3])
return deleted
