-- Worker side: admit a task message for a stop key and take the key's lock.
-- KEYS: status, lock, schedule, task_index, attempts, call_targets
-- ARGV: member, task_id, lock_token, lock_ttl_ms, call_uuid, url, auth_id, request_id,
--       not_after, deadline_s, retention_s, target, defer_s, watchdog_s
-- Returns {decision, detail, attempts, auth_id, not_after, enqueued_at}
local status, lock, schedule, task_index, attempts, targets =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local member, task_id, token = ARGV[1], ARGV[2], ARGV[3]
local now = now_s()
if redis.call('EXISTS', task_index) == 1 then
  return {'skip', 'duplicate'}
end
local r = redis.call('HMGET', status, 'task_id', 'state', 'phase', 'request_id')
local new_run = false
if not r[2] then
  new_run = true
elseif r[1] == task_id then
  if not pending(r[2]) then return {'skip', 'duplicate'} end
  if r[3] == 'waiting' then return {'skip', 'early'} end
elseif pending(r[2]) then
  -- Another run of the same stop is pending: this message joins it.
  if r[2] == 'scheduled' and r[3] == 'waiting' then
    redis.call('ZADD', schedule, 'XX', 'LT', fmt(now), member)
  end
  return {'skip', 'merged', r[1]}
elseif ARGV[8] ~= '' and r[4] == ARGV[8] and (r[2] == 'stopped' or r[2] == 'already_stopped') then
  -- Another message of a request that already stopped this key (a raw producer's retry).
  return {'skip', 'duplicate_request'}
else
  new_run = true
end

local function adopt(state, phase)
  local not_after = now + tonumber(ARGV[10])
  if ARGV[9] ~= '' then not_after = tonumber(ARGV[9]) end
  local dlq_id = redis.call('HGET', status, 'dlq_id') or ''
  redis.call('DEL', status, attempts)
  redis.call('HSET', status, 'call_uuid', ARGV[5], 'url', ARGV[6], 'auth_id', ARGV[7],
    'request_id', ARGV[8], 'task_id', task_id, 'state', state, 'phase', phase, 'attempts', 0,
    'enqueued_at', fmt(now), 'due_at', fmt(now), 'not_after', fmt(not_after), 'dlq_id', dlq_id)
  redis.call('SADD', targets, ARGV[12])
  expire_all({status, targets}, tonumber(ARGV[11]) + math.max(0, not_after - now))
end

if redis.call('SET', lock, token, 'NX', 'PX', tonumber(ARGV[4])) == false then
  -- Someone holds the key. Whoever it is, look again when the lock would expire: if the holder
  -- finishes first, that entry is dropped (terminal) or replaced (retry); if the holder died or
  -- could not record its outcome, the stop runs again then instead of being lost.
  local recheck = fmt(now + math.max(tonumber(ARGV[13]), redis.call('PTTL', lock) / 1000))
  local holder = redis.call('GET', lock) or ''
  if string.sub(holder, 1, #task_id + 1) == task_id .. ':' then
    redis.call('ZADD', schedule, 'LT', recheck, member)
    return {'skip', 'busy'}
  end
  -- Locked by a different run: this run waits in the schedule until then.
  if new_run then adopt('queued', 'waiting') else redis.call('HSET', status, 'phase', 'waiting') end
  redis.call('ZADD', schedule, recheck, member)
  return {'skip', 'deferred'}
end
if new_run then adopt('queued', 'ready') end
-- The message is in kombu's unacked set now; the watchdog covers a redelivery that gets lost.
watch(schedule, status, member, tonumber(ARGV[14]))
local f = redis.call('HMGET', status, 'attempts', 'auth_id', 'not_after', 'enqueued_at')
local decision = 'run'
if tonumber(f[3]) < now then decision = 'expired' end
return {decision, '', f[1], f[2], f[3], f[4]}
