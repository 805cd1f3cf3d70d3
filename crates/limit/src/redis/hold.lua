-- A provider's "slow down": no slot on this key before now + ARGV[1] µs (server time).
-- KEYS[1]: the key's meta hash (see reserve.lua).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local hold = tonumber(redis.call('HGET', KEYS[1], 'hold') or '0')
if until_ > hold then
  redis.call('HSET', KEYS[1], 'hold', string.format('%d', until_))
end
redis.call('PEXPIRE', KEYS[1], math.max(math.ceil(tonumber(ARGV[1]) / 1000) + 1000, redis.call('PTTL', KEYS[1])))
return 1
