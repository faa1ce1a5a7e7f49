-- KEYS: log per window. ARGV: member (from acquire), then len_us per window.
-- Restamps a granted token with the moment its call really starts, so the windows count the call
-- where the upstream sees it, however long the caller took between the grant and the send.
-- Every grant made in between counted the member (a member leaves a log only when a later grant
-- prunes it, or with the log's TTL), so the restamp keeps every window exact. Once the member
-- left any window, another call may already hold its place: the token is void, and is taken
-- out of the other windows too.
-- Returns {1, now} confirmed, {0, now} void.
local now = now_us()
local member = ARGV[1]
for i = 1, #KEYS do
  if not redis.call('ZSCORE', KEYS[i], member) then
    for j = 1, #KEYS do
      redis.call('ZREM', KEYS[j], member)
    end
    return {0, now}
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', fmt(now), member)
  redis.call('PEXPIRE', KEYS[i], fmt(math.ceil(tonumber(ARGV[1 + i]) / 1000)))
end
return {1, now}
