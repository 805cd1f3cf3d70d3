-- A periodic schedule's tick: ARGV = P, schedule, tick, id, n, n field/value pairs. Moves the
-- schedule's last tick forward and enqueues the job, or does nothing if this tick or a later
-- one was taken: nil. Otherwise {nil} (inserted) or {fields of the job standing instead}.
local schedule, tick = ARGV[2], ARGV[3]
local last = redis.call('HGET', P .. 'ticks', schedule)
if last and tonumber(last) >= tonumber(tick) then
    return false
end
redis.call('HSET', P .. 'ticks', schedule, tick)
local flat, map = read_fields(6, tonumber(ARGV[5]))
local standing = insert(ARGV[4], flat, map)
if not standing then
    wake()
end
return { standing }
