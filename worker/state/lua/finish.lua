-- finish: record an attempt's outcome, move the stop to its next state, release its lock.
-- KEYS[1]  call key (recstop:call:<call_uuid>)
-- KEYS[2]  schedule
-- KEYS[3]  dead-letter index (recstop:dlq)      KEYS[4]  dead-letter entries (recstop:dlq:entries)
-- KEYS[5]  metrics (recstop:metrics)
-- KEYS[6]  the task's Celery result (celery-task-meta-<task_id>): written with the outcome
-- KEYS[7]  audit outbox (recstop:audit)
-- KEYS[8]  the confirmations' schedule (recstop:confirm)
-- KEYS[9]  (optional) the in-flight list holding the task's message: acknowledged here, with the
--          outcome, so no crash can leave an outcome recorded and its message still to redo
-- ARGV[1]  JSON {member, target, call, task_id, lock_token, outcome, attempt, http_status, error,
--          delay_s, reason, dlq_id, payload, retention_s, dlq_max_entries, dlq_max_age_s, started_at,
--          buckets (the latency histogram's bounds, as labels), confirm: {deadline_s, first_s}
--          (absent: confirmation off): a successful stop's recordings are then looked up first_s
--          later (KEYS[8] lists the lookups' schedule),
--          results: {expires_s, meta}, audit: {max, origin}}
--          outcome is an OUTCOME word (model/vocabulary.py Outcome);
--          attempt is the attempt log entry (absent when no API call was made).
-- ARGV[2]  (with KEYS[9]) the message, byte for byte as fetched
-- Returns JSON {state, detail, settled, joined, result_status, result}: the stop's state afterwards
-- (or SIDELINED.SUPERSEDED), the dead reason or the next attempt's due time, the task ids of the
-- single-recording stops a stop-all settled, and of the messages that joined this run with the
-- result written for it (the caller writes theirs: their keys are not known before this runs).
local key, schedule, dlq_index, dlq_entries, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local result_key, stream, confirms = KEYS[6], KEYS[7], KEYS[8]
local A = cjson.decode(ARGV[1])
local outcome, reason, retention_s = A.outcome, A.reason, A.retention_s
local now = now_ms()
if KEYS[9] ~= nil then redis.call('LREM', KEYS[9], 1, ARGV[2]) end

-- Metrics (state/keys.py METRICS): counted in this script, so exactly once per recorded outcome,
-- whichever process records it. A.buckets: the latency histogram's upper bounds
-- (observability/metrics.py LATENCY_BUCKETS), as the labels they are counted under.
local function count(field) redis.call('HINCRBY', metrics, field, 1) end
local attempt = A.attempt
if attempt ~= nil then
  local code = COUNTER.NO_STATUS
  if attempt.http_status ~= nil then code = string.format('%d', attempt.http_status) end
  local secs = (attempt.duration_ms or 0) / 1000
  local le = '+Inf'
  for _, b in ipairs(A.buckets) do
    if secs <= tonumber(b) then le = b; break end
  end
  -- The one count of an attempt: the attempts total and the histogram's count are its sums
  -- (observability/counters.py).
  count(counter(COUNTER.LATENCY_BUCKET, code, le))
  redis.call('HINCRBYFLOAT', metrics, counter(COUNTER.LATENCY_SUM, code), string.format('%.6f', secs))
  if attempt.http_status == 429 then count(COUNTER.RATE_LIMITED) end
  if attempt.retry_after_s ~= nil then
    count(COUNTER.RETRY_AFTER)
    redis.call('HINCRBYFLOAT', metrics, COUNTER.RETRY_AFTER_SECONDS, string.format('%.3f', attempt.retry_after_s))
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
  audit(stream, metrics, A.audit, AUDIT.ATTEMPT, A, A.target, now, {attempt = attempt.attempt,
    http_status = attempt.http_status, error = attempt.error, duration_ms = attempt.duration_ms,
    retry_in_s = attempt.retry_in_s, outcome = attempt.outcome})
end
local function done(state, detail, counter, recorded)
  release()
  save_call(key, call, now)
  count(counter)
  if recorded then
    -- cancelled before this attempt's outcome: the cancel recorded its own event
  elseif TERMINAL[state] then
    audit(stream, metrics, A.audit, state, r, A.target, now, {attempt = r.attempts,
      http_status = A.http_status, reason = state == STATE.DEAD and detail or nil, error = A.error})
  elseif state == STATE.RETRYING then
    audit(stream, metrics, A.audit, AUDIT.RETRY_SCHEDULED, r, A.target, now, {attempt = r.attempts,
      due_at = r.due_at, retry_in_s = A.delay_s})
  end
  local status, result = result_of(r, state, detail, attempt and attempt.attempt, A.http_status)
  local reply = {state = state, detail = detail or '', settled = settled}
  if status ~= nil then
    store_result(result_key, A.results, A.task_id, status, result)
    -- While the recordings are confirmed, the joined messages are kept: their results are
    -- written again, with the recordings, when the confirmation settles (confirm.lua).
    local confirming = r.confirmation == CONFIRMATION.PENDING
    if r.joined ~= nil and state ~= STATE.RETRYING then
      -- The messages that joined this run get its result too (written by the caller).
      reply.joined, reply.result_status, reply.result = r.joined, status, result
      if not confirming then
        r.joined = nil
        save_call(key, call, now)
      end
    end
  end
  return cjson.encode(reply)
end

if r == nil then
  -- The record expired while this attempt ran (far past its retention): nothing to update.
  count(counter(COUNTER.STOPS, SIDELINED.SUPERSEDED))
  return cjson.encode({state = SIDELINED.SUPERSEDED, detail = ''})
end
if r.task_id ~= A.task_id then
  -- This run was cancelled and the stop adopted by a newer run meanwhile: keep only the verdict.
  if outcome ~= OUTCOME.RETRY then
    remember(r, A.task_id, outcome)
    -- This task's own attempt did that: its result says so (a superseded retry writes nothing).
    local status, result = result_of(r, outcome, reason, attempt and attempt.attempt, A.http_status)
    if outcome == OUTCOME.DEAD then result = stop_dead(reason or STATE.DEAD, A.error) end
    store_result(result_key, A.results, A.task_id, status, result)
  end
  release()
  save_call(key, call, now)
  count(counter(COUNTER.STOPS, SIDELINED.SUPERSEDED))
  return cjson.encode({state = SIDELINED.SUPERSEDED, detail = '', settled = settled})
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

if r.state == STATE.CANCELLED and (outcome == OUTCOME.RETRY or outcome == OUTCOME.DEAD) then
  return done(STATE.CANCELLED, '', counter(COUNTER.STOPS, STATE.CANCELLED), true)
end
if outcome == OUTCOME.RETRY then
  local due = now + A.delay_s
  if due <= r.not_after then
    r.state, r.phase, r.due_at, r.watch_at = STATE.RETRYING, PHASE.WAITING, due, nil
    r.keep_until = now + retention_s + (r.not_after - now)
    redis.call('ZADD', schedule, fmt(due), A.member)
    return done(STATE.RETRYING, fmt(due), counter(COUNTER.STOPS, COUNTER.RETRIED))
  end
  outcome, reason = OUTCOME.DEAD, DEAD_REASON.DEADLINE
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

if outcome == OUTCOME.DEAD then
  r.dlq_id, r.dead_reason = A.dlq_id, reason
  dlq_add(dlq_index, dlq_entries, A.dlq_id, {
    id = A.dlq_id, task_id = A.task_id, key = A.member, reason = reason, error = A.error,
    http_status = A.http_status, payload = A.payload, attempts = r.log, attempt_count = r.attempts,
    dead_at = now, call_uuid = r.call_uuid, url = r.url, auth_id = r.auth_id,
    request_id = r.request_id}, now, A.dlq_max_entries, A.dlq_max_age_s)
  return done(STATE.DEAD, reason, counter(COUNTER.DEAD, reason))
end
if A.confirm ~= nil then
  -- The recording is stopped; whether Vobiz confirms it ended is looked up from now on
  -- (run/confirmer.py), never delaying this stop's own outcome.
  r.confirmation, r.confirm_until, r.confirm_lookups = CONFIRMATION.PENDING, now + A.confirm.deadline_s, 0
  redis.call('ZADD', confirms, fmt(now + A.confirm.first_s), A.member)
end
if A.target == KEY.ALL_TARGET then
  -- A finished stop-all also settles the call's single-recording stops pending before it ran.
  for target, o in pairs(call) do
    if target ~= KEY.ALL_TARGET and pending(o.state) and o.enqueued_at <= A.started_at then
      o.state, o.phase, o.finished_at, o.settled_by = STATE.ALREADY_STOPPED, nil, now, A.task_id
      table.insert(settled, o.task_id)
      audit(stream, metrics, A.audit, AUDIT.SETTLED, o, target, now, {reason = 'stop-all ' .. A.task_id})
      o.keep_until, o.watch_at = now + retention_s, nil
      redis.call('ZREM', schedule, member(A.call, target))
      count(COUNTER.SETTLED)
    end
  end
end
return done(outcome, '', counter(COUNTER.STOPS, outcome))
