-- Depth, read-only: ARGV = P, now. The unfinished jobs by kind and state as a reader at
-- `now` sees them: the counts kept at every write, with the scheduled and retrying jobs
-- whose time has come (not yet promoted by a claim) counted as available. Returns a flat
-- list of kind, state, jobs.
local now = ARGV[2]
local counts = {}
local flat = redis.call('HGETALL', P .. 'counts')
for i = 1, #flat, 2 do
    counts[flat[i]] = tonumber(flat[i + 1])
end
for _, kind in ipairs(redis.call('SMEMBERS', P .. 'kinds')) do
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'timed:' .. kind, '-inf', now)) do
        local state = redis.call('HGET', job_key(id), 'state')
        if state then
            counts[kind .. SEP .. state] = (counts[kind .. SEP .. state] or 0) - 1
            counts[kind .. SEP .. 'available'] = (counts[kind .. SEP .. 'available'] or 0) + 1
        end
    end
end
local out = {}
for field, n in pairs(counts) do
    if n > 0 then
        local cut = string.find(field, SEP, 1, true)
        table.insert(out, string.sub(field, 1, cut - 1))
        table.insert(out, string.sub(field, cut + 1))
        table.insert(out, n)
    end
end
return out
