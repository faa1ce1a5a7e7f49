-- KEYS: log, marker. ARGV: limit, len_us. Fills the window up to its limit with entries stamped
-- now, so no call is granted until the oldest entry already there leaves the window.
-- Returns {wait, now}, or {-1, now} when the window's state is lost.
local now = now_us()
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, now}
end
local limit = tonumber(ARGV[1])
local len = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - len))
local used = redis.call('ZCARD', KEYS[1])
for i = used + 1, limit do
  redis.call('ZADD', KEYS[1], fmt(now), 'x:' .. fmt(now) .. ':' .. fmt(i))
end
redis.call('PEXPIRE', KEYS[1], fmt(math.ceil(len / 1000)))
local _, wait = window_usage(KEYS[1], limit, len, now)
return {wait, now}
