-- KEYS: (log, marker) per window. ARGV: count of windows, len_us per window, then the audit
-- timestamps in microseconds, sorted. Seeds only windows whose marker is missing, then sets it.
-- Members are derived from the timestamps, so seeding the same history twice adds nothing.
-- Returns how many windows were seeded.
local now = now_us()
local n = tonumber(ARGV[1])
local seeded = 0
for i = 1, n do
  local key = KEYS[2 * i - 1]
  local marker = KEYS[2 * i]
  local len = tonumber(ARGV[1 + i])
  if redis.call('EXISTS', marker) == 0 then
    local previous = nil
    local repeat_count = 0
    for j = n + 2, #ARGV do
      local ts = tonumber(ARGV[j])
      if ts == previous then
        repeat_count = repeat_count + 1
      else
        repeat_count = 0
      end
      previous = ts
      if ts > now - len then
        -- A call stamped in the future (clock skew) counts as made now.
        local score = math.min(ts, now)
        redis.call('ZADD', key, fmt(score), 'a:' .. fmt(ts) .. ':' .. fmt(repeat_count))
      end
    end
    if redis.call('EXISTS', key) == 1 then
      redis.call('PEXPIRE', key, fmt(math.ceil(len / 1000)))
    end
    redis.call('SET', marker, fmt(now))
    seeded = seeded + 1
  end
end
return seeded
