-- Scheduler: lease the stops that are due, mark them ready, return what to publish.
-- KEYS: schedule   ARGV: status_prefix, lease_s, limit
local schedule = KEYS[1]
local now = now_s()
local lease_until = fmt(now + tonumber(ARGV[2]))
local due = redis.call('ZRANGE', schedule, '-inf', fmt(now), 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]),
  'WITHSCORES')
local out = {}
for i = 1, #due, 2 do
  local member, score = due[i], fmt(tonumber(due[i + 1]))
  local status = ARGV[1] .. member
  local r = redis.call('HMGET', status, 'state', 'task_id', 'call_uuid', 'url', 'auth_id',
    'request_id', 'not_after', 'attempts', 'watch_at', 'urgent')
  if not pending(r[1]) then
    redis.call('ZREM', schedule, member)
  else
    local republished = 0
    if r[9] == score then
      -- The watchdog fired: the stop's message was published but nothing settled it.
      republished = redis.call('HINCRBY', status, 'republished', 1)
      redis.call('HINCRBY', (string.gsub(KEYS[1], ':schedule$', ':metrics')), 'watchdog_republishes', 1)
      redis.call('HDEL', status, 'watch_at')
    end
    redis.call('ZADD', schedule, lease_until, member)
    redis.call('HSET', status, 'phase', 'ready')
    if r[1] == 'scheduled' then redis.call('HSET', status, 'state', 'queued') end
    table.insert(out, {member, lease_until, r[2], r[3], r[4], r[5], r[6], r[7], r[8], republished, r[10] or ''})
  end
end
local first = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
local wait = ''
if #first == 2 then wait = fmt(math.max(0, tonumber(first[2]) - now)) end
return {out, wait}
