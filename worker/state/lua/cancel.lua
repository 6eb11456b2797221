-- cancel: cancel a pending stop; it is never attempted afterwards.
-- KEYS[1]  call key (recstop:call:<call_uuid>)
-- KEYS[2]  schedule
-- KEYS[3]  metrics
-- KEYS[4]  audit outbox (recstop:audit)
-- KEYS[5]  (with task_id) the Celery result of that task id (celery-task-meta-<task_id>)
-- ARGV[1]  JSON {member, target, retention_s, events_channel, task_id, results, audit}:
--          task_id: the run the caller read (or a revoke names);
--          when the stop's current run has another task id nothing is cancelled and the reply says
--          so (changed), for the caller to read again. results: {expires_s, meta}; audit:
--          {max, origin} (origin: ORIGIN.CANCEL or ORIGIN.REVOKE, the audit event's reason).
-- ARGV[2]  (with task_id) that run's task-revoked event (state/taskevents.py), PUBLISHed on
--          events_channel when this script cancels it
-- Returns JSON {state, cancelled, task_id, running, changed, joiner, joined, result_status, result}:
-- the stop's state afterwards (NOT_FOUND.MISSING when there is none); running: an attempt holds the
-- stop's lock (its DELETE, if already sent, cannot be recalled: its outcome, if it stops the
-- recording, is recorded as stopped);
-- joiner: task_id only joined the run (nothing cancelled); joined: the task ids that joined the run,
-- whose result (result_status, result) the caller writes.
local key, schedule, metrics, stream, result_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local A = cjson.decode(ARGV[1])
local now = now_ms()
local call = load_call(key)
local r = call[A.target]
if r ~= nil and A.task_id ~= nil and r.task_id ~= A.task_id then
  for _, id in ipairs(r.joined or {}) do
    -- A message that joined this run: revoking it does not cancel the run others wait for.
    if id == A.task_id then
      return cjson.encode({state = r.state, cancelled = false, task_id = r.task_id, joiner = true})
    end
  end
  return cjson.encode({state = r.state, cancelled = false, task_id = r.task_id, changed = true})
end
if r == nil or not pending(r.state) then
  return cjson.encode({state = r and r.state or NOT_FOUND.MISSING, cancelled = false, task_id = r and r.task_id})
end
local running = r.lock_until ~= nil and r.lock_until > now
r.state, r.phase, r.finished_at = STATE.CANCELLED, nil, now
r.keep_until, r.watch_at = now + A.retention_s, nil
redis.call('ZREM', schedule, A.member)
save_call(key, call, now)
redis.call('HINCRBY', metrics, counter(COUNTER.STOPS, STATE.CANCELLED), 1)
if ARGV[2] ~= nil then redis.call('PUBLISH', A.events_channel, ARGV[2]) end
store_result(result_key, A.results, r.task_id, result_of(r, STATE.CANCELLED))
audit(stream, metrics, A.audit, AUDIT.CANCELLED, r, A.target, now,
  {reason = A.audit and A.audit.origin, origin = A.audit and A.audit.origin, running = running or nil})
local status, result = result_of(r, STATE.CANCELLED)
return cjson.encode({state = STATE.CANCELLED, cancelled = true, task_id = r.task_id, running = running,
  joined = r.joined, result_status = status, result = result})
