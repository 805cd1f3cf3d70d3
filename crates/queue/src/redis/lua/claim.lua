-- Claim: ARGV = P, now, lease_until, limit, scan budget, kinds... Makes the due scheduled and
-- retrying jobs of these kinds available, then takes up to `limit` available jobs by
-- priority, run_at, id across the kinds (a merge of their sorted sets), passing over jobs
-- whose concurrency key is at its limit (counting those taken in this claim), and marks them
-- running with one more attempt and claim and a lease. Returns the claimed jobs' fields.
-- Scripts run one at a time, so two claims never see the same job or the same free slot.
local now, lease_until, limit, budget = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local PROMOTE = 10000
local PAGE = 100

local lanes = {}
for i = 6, #ARGV do
    local kind = ARGV[i]
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'timed:' .. kind, '-inf', now, 'LIMIT', 0, PROMOTE)) do
        change(id, { state = 'available' })
    end
    table.insert(lanes, { key = P .. 'available:' .. kind, page = {}, pos = 1, offset = 0, done = false })
end

-- The next member of a kind's available set, fetched a page at a time (nothing is removed
-- while the merge walks, so offsets stay true).
local function peek(lane)
    if lane.pos > #lane.page then
        if lane.done then
            return nil
        end
        lane.page = redis.call('ZRANGEBYLEX', lane.key, '-', '+', 'LIMIT', lane.offset, PAGE)
        lane.offset = lane.offset + #lane.page
        lane.pos = 1
        lane.done = #lane.page < PAGE
    end
    return lane.page[lane.pos]
end

local picked = {}
local taken = {}
local scanned = 0
while #picked < limit and scanned < budget do
    local best, from = nil, nil
    for _, lane in ipairs(lanes) do
        local member = peek(lane)
        if member and (not best or member < best) then
            best, from = member, lane
        end
    end
    if not best then
        break
    end
    from.pos = from.pos + 1
    scanned = scanned + 1
    local id = string.sub(best, 26)
    local v = redis.call('HMGET', job_key(id), 'tenant', 'ckey', 'climit')
    local free = true
    if v[2] then
        local field = v[1] .. SEP .. v[2]
        local running = tonumber(redis.call('HGET', P .. 'concurrency', field) or '0') + (taken[field] or 0)
        if running >= tonumber(v[3]) then
            free = false
        else
            taken[field] = (taken[field] or 0) + 1
        end
    end
    if free then
        table.insert(picked, id)
    end
end

local out = {}
for _, id in ipairs(picked) do
    local key = job_key(id)
    redis.call('HINCRBY', key, 'attempt', 1)
    redis.call('HINCRBY', key, 'claims', 1)
    change(id, { state = 'running', leased_until = lease_until })
    table.insert(out, redis.call('HGETALL', key))
end
return out
