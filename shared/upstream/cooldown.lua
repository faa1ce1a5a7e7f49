-- KEYS: cooldown. ARGV: duration_us, reason. Never shortens a longer cooldown already in place.
-- Returns the remaining cooldown after the call.
local now = now_us()
local until_us = now + tonumber(ARGV[1])
local current = redis.call('HGET', KEYS[1], 'until_us')
if current and tonumber(current) >= until_us then
  return tonumber(current) - now
end
redis.call('HSET', KEYS[1], 'until_us', fmt(until_us), 'reason', ARGV[2])
redis.call('PEXPIRE', KEYS[1], fmt(math.ceil(tonumber(ARGV[1]) / 1000)))
return tonumber(ARGV[1])
