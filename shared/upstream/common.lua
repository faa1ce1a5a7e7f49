-- Shared Lua helpers. Numbers are integer microseconds; they are formatted with %d before being
-- handed to Redis because Lua's tostring() keeps only 14 significant digits.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function fmt(n)
  return string.format('%d', n)
end

-- Calls in (now - len, now] and the wait until one of them leaves so that a call fits again.
local function window_usage(key, limit, len, now)
  local used = redis.call('ZCOUNT', key, '(' .. fmt(now - len), '+inf')
  if used < limit then
    return used, 0
  end
  local blocker = redis.call('ZRANGEBYSCORE', key, '(' .. fmt(now - len), '+inf',
    'WITHSCORES', 'LIMIT', used - limit, 1)
  return used, tonumber(blocker[2]) + len - now
end

local function cooldown_wait(key, now)
  local until_us = redis.call('HGET', key, 'until_us')
  if until_us and tonumber(until_us) > now then
    return tonumber(until_us) - now
  end
  return 0
end
