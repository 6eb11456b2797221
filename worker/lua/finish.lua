-- Worker side: record an attempt's outcome, move the stop to its next state, release the lock.
-- KEYS: status, lock, schedule, task_index, attempts, call_targets, dlq_index (and prefix:metrics)
-- ARGV: member, task_id, lock_token, result, attempt_json, http_status, error, delay_s,
--       reason, new_dlq_id, payload_json, retention_s, dlq_max_entries, dlq_max_age_s,
--       prefix, attempt_started_at, target, call_uuid
-- result is one of: stopped, already_stopped, retry, dead.
-- Returns {final_state, reason}
local status, lock, schedule, task_index, attempts, targets, dlq_index =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local member, task_id, token, result = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retention, prefix = tonumber(ARGV[12]), ARGV[15]
local now = now_s()

-- Metrics (recstop:metrics, see worker/keys.py): counted in this script, so exactly once per
-- recorded outcome, whichever process records it. BUCKETS must equal LATENCY_BUCKETS in worker/metrics.py.
local metrics = prefix .. ':metrics'
local BUCKETS = {'0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '15'}
local function count(field) redis.call('HINCRBY', metrics, field, 1) end
if ARGV[5] ~= '' then
  local a = cjson.decode(ARGV[5])
  local code = 'none'
  if type(a.http_status) == 'number' then code = string.format('%d', a.http_status) end
  local secs = (tonumber(a.duration_ms) or 0) / 1000
  local le = '+Inf'
  for _, b in ipairs(BUCKETS) do
    if secs <= tonumber(b) then le = b; break end
  end
  count('attempts')
  count('latency_count:' .. code)
  count('latency_bucket:' .. code .. ':' .. le)
  redis.call('HINCRBYFLOAT', metrics, 'latency_sum:' .. code, string.format('%.6f', secs))
  if code == '429' then count('rate_limited') end
  if type(a.retry_after_s) == 'number' then
    count('retry_after')
    redis.call('HINCRBYFLOAT', metrics, 'retry_after_seconds', string.format('%.3f', a.retry_after_s))
  end
end

local function release()
  if redis.call('GET', lock) == token then redis.call('DEL', lock) end
end

local r = redis.call('HMGET', status, 'task_id', 'state', 'dlq_id')
if r[1] ~= task_id then
  -- This run was cancelled and the key adopted by a newer run meanwhile: keep only the verdict.
  if result ~= 'retry' then redis.call('SET', task_index, result, 'EX', retention) end
  release()
  count('stops:superseded')
  return {'superseded', ''}
end
if ARGV[5] ~= '' then
  redis.call('RPUSH', attempts, ARGV[5])
  redis.call('LTRIM', attempts, -200, -1)
  redis.call('HINCRBY', status, 'attempts', 1)
  redis.call('HSET', status, 'last_attempt_at', ARGV[16])
  redis.call('HSETNX', status, 'first_attempt_at', ARGV[16])
end
if ARGV[6] ~= '' then redis.call('HSET', status, 'last_http_status', ARGV[6]) end
redis.call('HSET', status, 'last_error', ARGV[7])

local state = r[2]
local reason = ARGV[9]
if state == 'cancelled' and (result == 'retry' or result == 'dead') then
  release()
  count('stops:cancelled')
  return {'cancelled', ''}
end
if result == 'retry' then
  local not_after = tonumber(redis.call('HGET', status, 'not_after'))
  local due = now + tonumber(ARGV[8])
  if due <= not_after then
    redis.call('HSET', status, 'state', 'retrying', 'phase', 'waiting', 'due_at', fmt(due))
    redis.call('ZADD', schedule, fmt(due), member)
    expire_all({status, attempts, targets}, retention + (not_after - now))
    release()
    count('stops:retried')
    return {'retrying', fmt(due)}
  end
  result, reason = 'dead', 'deadline'
end

redis.call('HSET', status, 'state', result, 'phase', 'done', 'finished_at', fmt(now))
redis.call('ZREM', schedule, member)
redis.call('SET', task_index, result, 'EX', retention)
local old_dlq = r[3] or ''
if old_dlq ~= '' then
  redis.call('ZREM', dlq_index, old_dlq)
  redis.call('DEL', prefix .. ':dlq:' .. old_dlq)
  redis.call('HSET', status, 'dlq_id', '')
end

if result == 'dead' then
  local max_age = tonumber(ARGV[14])
  local entry_id = ARGV[10]
  local rec = redis.call('HMGET', status, 'call_uuid', 'url', 'auth_id', 'request_id', 'attempts')
  local log = redis.call('LRANGE', attempts, 0, -1)
  redis.call('HSET', status, 'dlq_id', entry_id, 'dead_reason', reason)
  dlq_add(dlq_index, prefix .. ':dlq:', entry_id, {
    'id', entry_id, 'task_id', task_id, 'key', member, 'reason', reason, 'error', ARGV[7],
    'http_status', ARGV[6], 'payload', ARGV[11], 'attempts', '[' .. table.concat(log, ',') .. ']',
    'attempt_count', rec[5], 'dead_at', fmt(now), 'call_uuid', rec[1], 'url', rec[2],
    'auth_id', rec[3], 'request_id', rec[4]}, now, tonumber(ARGV[13]), max_age)
elseif ARGV[17] == 'all' then
  -- A finished stop-all also settles the call's single-recording stops pending before it ran.
  local started = tonumber(ARGV[16])
  for _, t in ipairs(redis.call('SMEMBERS', targets)) do
    if t ~= 'all' then
      local m = ARGV[18] .. '/' .. t
      local sk = prefix .. ':status:' .. m
      local s = redis.call('HMGET', sk, 'state', 'enqueued_at', 'task_id')
      if pending(s[1]) and tonumber(s[2]) <= started then
        redis.call('HSET', sk, 'state', 'already_stopped', 'phase', 'done', 'finished_at', fmt(now),
          'settled_by', task_id)
        redis.call('ZREM', schedule, m)
        redis.call('SET', prefix .. ':task:' .. s[3], 'already_stopped', 'EX', retention)
        redis.call('EXPIRE', sk, retention)
        count('settled')
      end
    end
  end
end
expire_all({status, attempts, targets}, retention)
release()
if result == 'dead' then count('dead:' .. reason) else count('stops:' .. result) end
return {result, reason}
