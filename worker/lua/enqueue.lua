-- Producer side: create a run for a stop key unless one is already pending.
-- KEYS: status, schedule, call_targets, attempts
-- ARGV: member, task_id, call_uuid, url, auth_id, request_id, not_after, deadline_s,
--       delay_s, at, publish_grace_s, retention_s, target, dlq_id
local status, schedule, targets, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, task_id = ARGV[1], ARGV[2]
local now = now_s()
local due = now
if ARGV[10] ~= '' then due = tonumber(ARGV[10]) elseif ARGV[9] ~= '' then due = now + tonumber(ARGV[9]) end
local cur = redis.call('HMGET', status, 'state', 'task_id', 'phase', 'due_at', 'dlq_id', 'request_id')
if pending(cur[1]) then
  -- Deduplicated. A stop wanted sooner than a scheduled one pulls it forward: "stop now" must
  -- never wait for a stop that was scheduled for later.
  if cur[1] == 'scheduled' and cur[3] == 'waiting' and due < tonumber(cur[4]) then
    if due <= now then
      local score = fmt(now + tonumber(ARGV[11]))
      redis.call('HSET', status, 'state', 'queued', 'phase', 'ready', 'due_at', fmt(now))
      redis.call('ZADD', schedule, score, member)
      return {cur[2], '1', 'queued', score, 'publish'}
    end
    redis.call('HSET', status, 'due_at', fmt(due))
    redis.call('ZADD', schedule, fmt(due), member)
  end
  return {cur[2], '1', redis.call('HGET', status, 'state'), '', ''}
end
if ARGV[6] ~= '' and cur[6] == ARGV[6] and (cur[1] == 'stopped' or cur[1] == 'already_stopped') then
  -- The same request (same request_id) already stopped this key: a producer's retry, not a new stop.
  return {cur[2], '1', cur[1], '', ''}
end
local not_after = due + tonumber(ARGV[8])
if ARGV[7] ~= '' then not_after = tonumber(ARGV[7]) end
if not_after <= now then
  return {'', 'invalid', 'not_after is already in the past', '', ''}
end
if not_after < due then
  return {'', 'invalid', 'not_after is earlier than the time the stop is due', '', ''}
end
-- A dead letter of this key's previous run goes away once this run succeeds.
local dlq_id = ARGV[14]
if dlq_id == '' then dlq_id = cur[5] or '' end
local state, phase, score = 'queued', 'ready', now + tonumber(ARGV[11])
if due > now then state, phase, score = 'scheduled', 'waiting', due end
redis.call('DEL', status, attempts)
redis.call('HSET', status, 'call_uuid', ARGV[3], 'url', ARGV[4], 'auth_id', ARGV[5],
  'request_id', ARGV[6], 'task_id', task_id, 'state', state, 'phase', phase, 'attempts', 0,
  'enqueued_at', fmt(now), 'due_at', fmt(due), 'not_after', fmt(not_after), 'dlq_id', dlq_id)
redis.call('ZADD', schedule, fmt(score), member)
redis.call('SADD', targets, ARGV[13])
expire_all({status, targets}, tonumber(ARGV[12]) + (not_after - now))
return {task_id, '0', state, fmt(score), state == 'queued' and 'publish' or ''}
