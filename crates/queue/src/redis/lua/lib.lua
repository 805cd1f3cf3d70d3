-- The Redis lane's shared Lua, prepended to every script that writes jobs: how a job is
-- stored and indexed, written once (as memory.rs's `Inner::put`), so no script can forget an
-- index. ARGV[1] is always the namespace prefix P; the key layout is in docs/queue-redis.md
-- and `redis/keys.rs`. Instants are integer microseconds since the Unix epoch.

local P = ARGV[1]
local SEP = '\0'
local UNFINISHED = { scheduled = true, available = true, running = true, retrying = true }
local WAITING = { scheduled = true, available = true, retrying = true }
local INDEXED = { 'state', 'kind', 'tenant', 'order', 'run_at', 'leased_until', 'ukey', 'ckey', 'finished_at' }

local function job_key(id)
    return P .. 'job:' .. id
end

-- What the indexes of job `id` depend on, or nil if there is no such job.
local function read_index(id)
    local v = redis.call('HMGET', job_key(id), unpack(INDEXED))
    if not v[1] then
        return nil
    end
    return {
        id = id, state = v[1], kind = v[2], tenant = v[3], order = v[4], run_at = v[5],
        leased_until = v[6] or nil, ukey = v[7] or nil, ckey = v[8] or nil, finished_at = v[9] or nil,
    }
end

local function bump(key, field, by)
    if redis.call('HINCRBY', key, field, by) <= 0 then
        redis.call('HDEL', key, field)
    end
end

-- Adds (`add`) or removes the index entries of job `j` (as `read_index` returns it).
local function index(j, add)
    local s = j.state
    local function zset(key, score, member)
        if add then
            redis.call('ZADD', key, score, member)
        else
            redis.call('ZREM', key, member)
        end
    end
    if s == 'available' then
        -- Claim order is the member itself: priority, run_at, id (see `keys::order`).
        zset(P .. 'available:' .. j.kind, 0, j.order)
    elseif s == 'scheduled' or s == 'retrying' then
        zset(P .. 'timed:' .. j.kind, j.run_at, j.id)
    elseif s == 'running' then
        zset(P .. 'running', j.leased_until, j.id)
        if j.ckey then
            bump(P .. 'concurrency', j.tenant .. SEP .. j.ckey, add and 1 or -1)
        end
    elseif s == 'dead' then
        zset(P .. 'dead', j.finished_at, j.id)
    else
        zset(P .. 'done', j.finished_at, j.id)
    end
    if UNFINISHED[s] then
        bump(P .. 'counts', j.kind .. SEP .. s, add and 1 or -1)
        if j.ukey then
            local field = j.tenant .. SEP .. j.ukey
            if add then
                redis.call('HSET', P .. 'unique', field, j.id)
            elseif redis.call('HGET', P .. 'unique', field) == j.id then
                redis.call('HDEL', P .. 'unique', field)
            end
        end
    end
end

-- Sets fields of a stored job and moves its index entries with it: `set` maps fields to new
-- values, '' deleting the field. Every write bumps `rev`, the guard of `put.lua`.
local function change(id, set)
    local key = job_key(id)
    local j = read_index(id)
    index(j, false)
    local dels = {}
    for field, value in pairs(set) do
        if value == '' then
            table.insert(dels, field)
            j[field] = nil
        else
            redis.call('HSET', key, field, value)
            j[field] = value
        end
    end
    if #dels > 0 then
        redis.call('HDEL', key, unpack(dels))
    end
    redis.call('HINCRBY', key, 'rev', 1)
    -- `j` now holds what was written: no second read.
    index(j, true)
end

-- Reads `n` field/value pairs of ARGV from `at` into a flat list and a map.
local function read_fields(at, n)
    local flat, map = {}, {}
    for i = 0, n - 1 do
        local field, value = ARGV[at + 2 * i], ARGV[at + 2 * i + 1]
        table.insert(flat, field)
        table.insert(flat, value)
        map[field] = value
    end
    return flat, map
end

-- Inserts a new job (all its fields in `flat`/`map`, made by the caller) unless a job with
-- its id exists (a relayed outbox row seen twice) or an unfinished job of its tenant holds
-- its unique key. Returns false if inserted, else the fields of the job standing instead.
local function insert(id, flat, map)
    local key = job_key(id)
    if redis.call('EXISTS', key) == 1 then
        return redis.call('HGETALL', key)
    end
    if map.ukey then
        local holder = redis.call('HGET', P .. 'unique', map.tenant .. SEP .. map.ukey)
        if holder and redis.call('EXISTS', job_key(holder)) == 1 then
            return redis.call('HGETALL', job_key(holder))
        end
    end
    redis.call('HSET', key, unpack(flat))
    redis.call('ZADD', P .. 'ids', 0, id)
    redis.call('SADD', P .. 'kinds', map.kind)
    -- The indexed fields straight from what was written (absent optional fields are nil).
    local j = { id = id }
    for _, field in ipairs(INDEXED) do
        j[field] = map[field]
    end
    index(j, true)
    return false
end

-- Tells every worker of the namespace that jobs may be due (`listen.rs` subscribes).
local function wake()
    redis.call('PUBLISH', P .. 'wake', '')
end
