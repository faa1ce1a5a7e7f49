-- KEYS: cooldown, then (log, marker) per window. ARGV: (limit, len_us) per window. Read-only.
-- Returns {now, cooldown_wait, reason, then (used, wait, has_marker) per window}.
local now = now_us()
local result = {now, cooldown_wait(KEYS[1], now), redis.call('HGET', KEYS[1], 'reason') or ''}
local n = (#KEYS - 1) / 2
for i = 1, n do
  local used, wait = window_usage(KEYS[2 * i], tonumber(ARGV[2 * i - 1]),
    tonumber(ARGV[2 * i]), now)
  table.insert(result, used)
  table.insert(result, wait)
  table.insert(result, redis.call('EXISTS', KEYS[2 * i + 1]))
end
return result
