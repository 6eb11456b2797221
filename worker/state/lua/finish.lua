-- finish: record an attempt's outcome, move the stop to its next state, release its lock.
-- KEYS[1]  call key (recstop:call:<call_uuid>)
-- KEYS[2]  schedule
-- KEYS[3]  dead-letter index (recstop:dlq)      KEYS[4]  dead-letter entries (recstop:dlq:entries)
-- KEYS[5]  metrics (recstop:metrics)
-- KEYS[6]  the task's Celery result (celery-task-meta-<task_id>): written with the outcome
-- KEYS[7]  audit outbox (recstop:audit)
-- KEYS[8]  (optional) the in-flight list holding the task's message: acknowledged here, with the
--          outcome, so no crash can leave an outcome recorded and its message still to redo
-- ARGV[1]  JSON {member, target, call, task_id, lock_token, outcome, attempt, http_status, error,
--          delay_s, reason, dlq_id, payload, retention_s, dlq_max_entries, dlq_max_age_s, started_at,
--          results: {expires_s, date_done}, audit: {max, origin}}
--          outcome is worker/outcome.py Outcome: stopped, already_stopped, retry or dead;
--          attempt is the attempt log entry (absent when no API call was made).
-- ARGV[2]  (with KEYS[8]) the message, byte for byte as fetched
-- Returns JSON {state, detail, settled, joined, result_status, result}: the stop's state afterwards
-- (or superseded), the dead reason or the next attempt's due time, the task ids of the
-- single-recording stops a stop-all settled, and of the messages that joined this run with the
-- result written for it (the caller writes theirs: their keys are not known before this runs).
local key, schedule, dlq_index, dlq_entries, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local result_key, stream = KEYS[6], KEYS[7]
local A = cjson.decode(ARGV[1])
local outcome, reason, retention_s = A.outcome, A.reason, A.retention_s
local now = now_ms()
if KEYS[8] ~= nil then redis.call('LREM', KEYS[8], 1, ARGV[2]) end

-- Metrics (worker/keys.py METRICS): counted in this script, so exactly once per recorded outcome,
-- whichever process records it. BUCKETS must equal LATENCY_BUCKETS in worker/metrics.py.
local BUCKETS = {'0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '15'}
local function count(field) redis.call('HINCRBY', metrics, field, 1) end
local attempt = A.attempt
if attempt ~= nil then
  local code = 'none'
  if attempt.http_status ~= nil then code = string.format('%d', attempt.http_status) end
  local secs = (attempt.duration_ms or 0) / 1000
  local le = '+Inf'
  for _, b in ipairs(BUCKETS) do
    if secs <= tonumber(b) then le = b; break end
  end
  count('attempts')
  count('latency_count:' .. code)
  count('latency_bucket:' .. code .. ':' .. le)
  redis.call('HINCRBYFLOAT', metrics, 'latency_sum:' .. code, string.format('%.6f', secs))
  if code == '429' then count('rate_limited') end
  if attempt.retry_after_s ~= nil then
    count('retry_after')
    redis.call('HINCRBYFLOAT', metrics, 'retry_after_seconds', string.format('%.3f', attempt.retry_after_s))
  end
end

local call = load_call(key)
local r = call[A.target]
local function release()
  if r.lock == A.lock_token then r.lock, r.lock_until, r.lock_consumer = nil, nil, nil end
end
local settled = {}
-- The audit events of this outcome: what the API answered, then what became of the stop.
if attempt ~= nil then
  audit(stream, metrics, A.audit, 'attempt', A, A.target, now, {attempt = attempt.attempt,
    http_status = attempt.http_status, error = attempt.error, duration_ms = attempt.duration_ms,
    retry_in_s = attempt.retry_in_s, outcome = attempt.outcome})
end
local TERMINAL = {stopped = true, already_stopped = true, dead = true, cancelled = true}
local function done(state, detail, counter, recorded)
  release()
  save_call(key, call, now)
  count(counter)
  if recorded then
    -- cancelled before this attempt's outcome: the cancel recorded its own event
  elseif TERMINAL[state] then
    audit(stream, metrics, A.audit, state, r, A.target, now, {attempt = r.attempts,
      http_status = A.http_status, reason = state == 'dead' and detail or nil, error = A.error})
  elseif state == 'retrying' then
    audit(stream, metrics, A.audit, 'retry_scheduled', r, A.target, now, {attempt = r.attempts,
      due_at = r.due_at, retry_in_s = A.delay_s})
  end
  local status, result = result_of(r, state, detail, attempt and attempt.attempt, A.http_status)
  local reply = {state = state, detail = detail or '', settled = settled}
  if status ~= nil then
    store_result(result_key, A.results, A.task_id, status, result)
    if r.joined ~= nil and state ~= 'retrying' then
      -- The messages that joined this run get its result too (written by the caller).
      reply.joined, reply.result_status, reply.result = r.joined, status, result
      r.joined = nil
      save_call(key, call, now)
    end
  end
  return cjson.encode(reply)
end

if r == nil then
  -- The record expired while this attempt ran (far past its retention): nothing to update.
  count('stops:superseded')
  return cjson.encode({state = 'superseded', detail = ''})
end
if r.task_id ~= A.task_id then
  -- This run was cancelled and the stop adopted by a newer run meanwhile: keep only the verdict.
  if outcome ~= 'retry' then
    remember(r, A.task_id, outcome)
    -- This task's own attempt did that: its result says so (a superseded retry writes nothing).
    local status, result = result_of(r, outcome, reason, attempt and attempt.attempt, A.http_status)
    if outcome == 'dead' then result = exc('StopDead', 'recstop.worker.model.errors', {reason or 'dead', A.error or ''}) end
    store_result(result_key, A.results, A.task_id, status, result)
  end
  release()
  save_call(key, call, now)
  count('stops:superseded')
  return cjson.encode({state = 'superseded', detail = '', settled = settled})
end
if attempt ~= nil then
  local log = r.log or {}
  table.insert(log, attempt)
  while #log > 200 do table.remove(log, 1) end
  r.log = log
  r.attempts = r.attempts + 1
  r.last_attempt_at = A.started_at
  r.first_attempt_at = r.first_attempt_at or A.started_at
end
if A.http_status ~= nil then r.last_http_status = A.http_status end
r.last_error = A.error

if r.state == 'cancelled' and (outcome == 'retry' or outcome == 'dead') then
  return done('cancelled', '', 'stops:cancelled', true)
end
if outcome == 'retry' then
  local due = now + A.delay_s
  if due <= r.not_after then
    r.state, r.phase, r.due_at, r.watch_at = 'retrying', 'waiting', due, nil
    r.keep_until = now + retention_s + (r.not_after - now)
    redis.call('ZADD', schedule, fmt(due), A.member)
    return done('retrying', fmt(due), 'stops:retried')
  end
  outcome, reason = 'dead', 'deadline'
end

r.state, r.phase, r.finished_at = outcome, nil, now
r.keep_until, r.watch_at = now + retention_s, nil
redis.call('ZREM', schedule, A.member)
if r.dlq_id ~= nil then
  -- The dead letter of an earlier run of this stop: this run settled the stop.
  redis.call('ZREM', dlq_index, r.dlq_id)
  redis.call('HDEL', dlq_entries, r.dlq_id)
  r.dlq_id = nil
end

if outcome == 'dead' then
  r.dlq_id, r.dead_reason = A.dlq_id, reason
  dlq_add(dlq_index, dlq_entries, A.dlq_id, {
    id = A.dlq_id, task_id = A.task_id, key = A.member, reason = reason, error = A.error,
    http_status = A.http_status, payload = A.payload, attempts = r.log, attempt_count = r.attempts,
    dead_at = now, call_uuid = r.call_uuid, url = r.url, auth_id = r.auth_id,
    request_id = r.request_id}, now, A.dlq_max_entries, A.dlq_max_age_s)
  return done('dead', reason, 'dead:' .. reason)
end
if A.target == 'all' then
  -- A finished stop-all also settles the call's single-recording stops pending before it ran.
  for target, o in pairs(call) do
    if target ~= 'all' and pending(o.state) and o.enqueued_at <= A.started_at then
      o.state, o.phase, o.finished_at, o.settled_by = 'already_stopped', nil, now, A.task_id
      table.insert(settled, o.task_id)
      audit(stream, metrics, A.audit, 'settled', o, target, now, {reason = 'stop-all ' .. A.task_id})
      o.keep_until, o.watch_at = now + retention_s, nil
      redis.call('ZREM', schedule, A.call .. '/' .. target)
      count('settled')
    end
  end
end
return done(outcome, '', 'stops:' .. outcome)
