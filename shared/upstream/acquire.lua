-- KEYS: cooldown, seq, then (log, marker) per window.
-- ARGV: cost_id, then (limit, len_us) per window.
-- Returns {1, 0, now, member} granted, {0, wait, now} denied, {-1, 0, now} when a window's state is
-- lost. The member stands in every window until `confirm` restamps it with the call's real start.
local now = now_us()
local n = (#KEYS - 2) / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + 2 * i]) == 0 then
    return {-1, 0, now}
  end
end
local wait = cooldown_wait(KEYS[1], now)
local longest = 0
for i = 1, n do
  local key = KEYS[1 + 2 * i]
  local limit = tonumber(ARGV[2 * i])
  local len = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - len))
  local _, w = window_usage(key, limit, len, now)
  if w > wait then wait = w end
  if len > longest then longest = len end
end
if wait > 0 then
  return {0, wait, now}
end
local seq = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], fmt(math.ceil(longest / 1000)))
local member = fmt(now) .. ':' .. fmt(seq) .. ':' .. ARGV[1]
for i = 1, n do
  local key = KEYS[1 + 2 * i]
  redis.call('ZADD', key, fmt(now), member)
  redis.call('PEXPIRE', key, fmt(math.ceil(tonumber(ARGV[2 * i + 1]) / 1000)))
end
return {1, 0, now, member}
