-- Producer side: create a run for each stop key unless one is already pending.
-- Any number of stops per call (bulk enqueues send a chunk at once), each with
-- KEYS: status, schedule, call_targets, attempts
-- ARGV: member, task_id, call_uuid, url, auth_id, request_id, not_after, deadline_s,
--       delay_s, at, publish_grace_s, retention_s, target, dlq_id,
--       message (its task id a placeholder), queue, urgent ('1' or ''), watchdog_s
-- A stop due now is pushed onto the queue in this same script, and its schedule entry becomes
-- the watchdog: recorded and published atomically, in one round trip.
local function enqueue(KEYS, ARGV, now)
  local status, schedule, targets, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local member, task_id = ARGV[1], ARGV[2]
  local urgent = ARGV[17] == '1'

  local function push(id)
    local message = string.gsub(ARGV[15], '@@TASK_ID@@', id)
    redis.call('LPUSH', ARGV[16], message)
    watch(schedule, status, member, tonumber(ARGV[18]))
    if urgent then redis.call('HSET', status, 'urgent', '1') end
  end
  local due = now
  if ARGV[10] ~= '' then due = tonumber(ARGV[10]) elseif ARGV[9] ~= '' then due = now + tonumber(ARGV[9]) end
  local cur = redis.call('HMGET', status, 'state', 'task_id', 'phase', 'due_at', 'dlq_id', 'request_id')
  if pending(cur[1]) then
    -- Deduplicated. A stop wanted sooner than a scheduled one pulls it forward: "stop now" must
    -- never wait for a stop that was scheduled for later.
    if cur[1] == 'scheduled' and cur[3] == 'waiting' and due < tonumber(cur[4]) then
      if due <= now then
        redis.call('HSET', status, 'state', 'queued', 'phase', 'ready', 'due_at', fmt(now))
        push(cur[2])
        return {cur[2], '1', 'queued', '', 'pushed'}
      end
      redis.call('HSET', status, 'due_at', fmt(due))
      redis.call('ZADD', schedule, fmt(due), member)
    end
    if urgent and due <= now and cur[1] == 'queued' and redis.call('HGET', status, 'urgent') ~= '1' then
      -- An urgent stop must not wait behind the routine backlog its pending twin sits in: the
      -- same run goes onto the urgent queue too; whichever copy a worker takes first does the
      -- stop, the other is recognised as a duplicate of a finished task.
      push(cur[2])
      return {cur[2], '1', 'queued', '', 'pushed'}
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
  -- A new run due now is pushed right away; its schedule entry is the watchdog (first firing, as
  -- watch() would arm it: the record is new, so it was never republished).
  local state, phase, score = 'queued', 'ready', now + tonumber(ARGV[18])
  if due > now then state, phase, score = 'scheduled', 'waiting', due end
  redis.call('DEL', status, attempts)
  redis.call('HSET', status, 'call_uuid', ARGV[3], 'url', ARGV[4], 'auth_id', ARGV[5],
    'request_id', ARGV[6], 'task_id', task_id, 'state', state, 'phase', phase, 'attempts', 0,
    'enqueued_at', fmt(now), 'due_at', fmt(due), 'not_after', fmt(not_after), 'dlq_id', dlq_id,
    'watch_at', state == 'queued' and fmt(score) or '', 'urgent', urgent and '1' or '')
  redis.call('ZADD', schedule, fmt(score), member)
  redis.call('SADD', targets, ARGV[13])
  expire_all({status, targets}, tonumber(ARGV[12]) + (not_after - now))
  if state == 'queued' then
    redis.call('LPUSH', ARGV[16], (string.gsub(ARGV[15], '@@TASK_ID@@', task_id)))
    return {task_id, '0', state, '', 'pushed'}
  end
  return {task_id, '0', state, fmt(score), ''}
end

local now = now_s()
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local args = {}
  for j = 1, 18 do args[j] = ARGV[18 * i + j] end
  out[i + 1] = enqueue({KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]}, args, now)
end
return out
