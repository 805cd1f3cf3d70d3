-- One decision of questline-limit's RedisLimiter, atomic, on the server's clock (see
-- src/redis/mod.rs; the arithmetic is src/log.rs's, keep the two in step).
--
-- KEYS: for each distinct limit key k = 1..n, its log (a list of slots, µs, non-decreasing)
-- at 2k-1 and its meta hash (w: longest window, l: largest limit, hold: no slot before) at 2k;
-- last, the namespace's gate (no slot before it: set by a process coming back from its
-- local fallback).
-- ARGV: max_wait µs, gate µs from now (0: leave the gate), the number of rules, then per
-- rule: its key's index k, its limit, its effective window µs, paced (1) or not (0).
-- Reply: {granted 0/1, wait µs, slot µs (server time)}.
--
-- A refusal of a one-key decision leaves in the key's meta hash the rules it was for (fp)
-- and the key's own earliest slot for them (next: the hold, the last slot, the rules'
-- terms; not the gate, which may expire). Until the key's next booking (which clears it)
-- that is a lower bound of the earliest slot for the same rules: bookings and holds only
-- raise it, and a term leaves the log only once it is in the past. So a later decision with
-- the same rules whose bound is past its max_wait is refused from the hash alone, without
-- reading the log. Only refusals take this path: it can never admit too much.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local gate_rel = tonumber(ARGV[2])
local nrules = tonumber(ARGV[3])
local gate_key = KEYS[#KEYS]
local nkeys = (#KEYS - 1) / 2

local gate = tonumber(redis.call('GET', gate_key) or '0')
if gate_rel > 0 and now + gate_rel > gate then
  gate = now + gate_rel
  redis.call('SET', gate_key, string.format('%d', gate), 'PX', math.ceil(gate_rel / 1000) + 1000)
end
local slot = math.max(now, gate)
local fp = nkeys == 1 and table.concat(ARGV, ',', 4, 3 + 4 * nrules) or nil
-- The keys' own earliest slot: the slot before `now` and the gate (see above).
local own = 0

local maxw, maxl, lens = {}, {}, {}
for k = 1, nkeys do
  local m = redis.call('HMGET', KEYS[2 * k], 'w', 'l', 'hold', 'fp', 'next')
  maxw[k] = tonumber(m[1] or '0')
  maxl[k] = tonumber(m[2] or '0')
  local hold = tonumber(m[3] or '0')
  if fp and m[4] == fp then
    local bound = math.max(slot, tonumber(m[5]))
    if bound - now > max_wait then
      return {0, bound - now, bound}
    end
  end
  if hold > own then own = hold end
end
for r = 0, nrules - 1 do
  local k, limit, window = tonumber(ARGV[4 + 4 * r]), tonumber(ARGV[5 + 4 * r]), tonumber(ARGV[6 + 4 * r])
  if window > maxw[k] then maxw[k] = window end
  if limit > maxl[k] then maxl[k] = limit end
end
-- Keep what some rule seen can need: the last `l` slots, none a longest window old.
for k = 1, nkeys do
  local log = KEYS[2 * k - 1]
  local len = redis.call('LLEN', log)
  if len > maxl[k] then
    redis.call('LTRIM', log, len - maxl[k], -1)
    len = maxl[k]
  end
  while len > 0 and tonumber(redis.call('LINDEX', log, 0)) + maxw[k] <= now do
    redis.call('LPOP', log)
    len = len - 1
  end
  if len > 0 then
    local last = tonumber(redis.call('LINDEX', log, -1))
    if last > own then own = last end
  end
  lens[k] = len
end
-- The entry `limit` back from the end, plus the window; paced, the last slot plus
-- window / limit.
for r = 0, nrules - 1 do
  local k, limit, window = tonumber(ARGV[4 + 4 * r]), tonumber(ARGV[5 + 4 * r]), tonumber(ARGV[6 + 4 * r])
  local paced = tonumber(ARGV[7 + 4 * r])
  if lens[k] >= limit then
    local e = tonumber(redis.call('LINDEX', KEYS[2 * k - 1], lens[k] - limit)) + window
    if e > own then own = e end
  end
  if paced == 1 and lens[k] > 0 then
    local p = tonumber(redis.call('LINDEX', KEYS[2 * k - 1], -1)) + math.floor(window / limit)
    if p > own then own = p end
  end
end
if own > slot then slot = own end
local wait = slot - now
if wait > max_wait then
  if fp then
    redis.call('HSET', KEYS[2], 'fp', fp, 'next', string.format('%d', own))
  end
  return {0, wait, slot}
end
for k = 1, nkeys do
  local ttl = math.ceil((slot - now + maxw[k]) / 1000) + 1000
  redis.call('RPUSH', KEYS[2 * k - 1], string.format('%d', slot))
  redis.call('HSET', KEYS[2 * k], 'w', string.format('%d', maxw[k]), 'l', string.format('%d', maxl[k]), 'next', '0')
  redis.call('PEXPIRE', KEYS[2 * k - 1], ttl)
  redis.call('PEXPIRE', KEYS[2 * k], math.max(ttl, redis.call('PTTL', KEYS[2 * k])))
end
return {1, wait, slot}
