-- begin: admit a task message for a stop, and take the stop's lock for this attempt.
-- KEYS[1]  call key (recstop:call:<call_uuid>)
-- KEYS[2]  schedule
-- KEYS[3]  consumers (recstop:consumers): a lock whose holder is no longer a consumer is stale
-- KEYS[4]  the task index entry of this task id (recstop:task:<task_id>), set when it starts a run
-- KEYS[5]  the revoke of this task id (recstop:revoked:<task_id>), if a revoke came before its run
-- KEYS[6]  the task's Celery result (celery-task-meta-<task_id>)   KEYS[7]  metrics
-- KEYS[8]  audit outbox (recstop:audit)
-- ARGV[1]  JSON {member, target, task_id, lock_token, lock_ttl_ms, consumer, call_uuid, url,
--          auth_id, default_auth_id, request_id, not_after, deadline_s, retention_s, defer_s,
--          watchdog_s, results: {expires_s, meta}, audit: {max, origin}}:
--          consumer is the worker connection that fetched the message (absent: unknown);
--          default_auth_id is the worker's default account, the one a message without auth_id
--          (any Celery client, a raw LPUSH) is run with: a run this script starts records it
-- Returns JSON {decision (DECISION), detail, attempts, auth_id, not_after}: a skip's detail is a
-- SKIP or DEDUP word; cancelled: the run was cancelled (recstop cancel, or a revoke of this task
-- id) and never calls the API.
local key, schedule, consumers = KEYS[1], KEYS[2], KEYS[3]
local task_index, revoked, result_key, metrics, stream = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local A = cjson.decode(ARGV[1])
-- The account the stop is run with is known now: the record and every event of the run carry it.
A.auth_id = A.auth_id or A.default_auth_id
local name, task_id, now = A.member, A.task_id, now_ms()
local call = load_call(key)
local r = call[A.target]

local function skip(detail)
  return cjson.encode({decision = DECISION.SKIP, detail = detail})
end

local function cancelled()
  store_result(result_key, A.results, task_id, result_of(r, STATE.CANCELLED))
  return cjson.encode({decision = DECISION.CANCELLED, detail = 'cancelled before its attempt'})
end

local new = false
if r == nil then
  new = true
elseif finished_before(r, task_id) then
  return skip(SKIP.DUPLICATE)
elseif r.task_id == task_id then
  if r.state == STATE.CANCELLED then return cancelled() end
  if not pending(r.state) then return skip(SKIP.DUPLICATE) end
  if r.phase == PHASE.WAITING then return skip(SKIP.EARLY) end
elseif pending(r.state) then
  -- Another run of the same stop is pending: this message joins it (its result follows the run's).
  if r.state == STATE.SCHEDULED and r.phase == PHASE.WAITING then
    redis.call('ZADD', schedule, 'XX', 'LT', fmt(now), name)
  end
  join(r, task_id, task_index, name, now)
  save_call(key, call, now)
  audit(stream, metrics, A.audit, AUDIT.DEDUPLICATED, r, A.target, now,
    {reason = DEDUP.MERGED, origin = ORIGIN.CELERY, joined_task_id = task_id})
  return skip(DEDUP.MERGED)
elseif A.request_id ~= nil and r.request_id == A.request_id and SUCCEEDED[r.state] then
  -- Another message of a request that already stopped this recording (a raw producer's retry):
  -- its result is the stop's.
  store_result(result_key, A.results, task_id, result_of(r, r.state, 'duplicate of ' .. r.task_id))
  audit(stream, metrics, A.audit, AUDIT.DEDUPLICATED, r, A.target, now,
    {reason = DEDUP.DUPLICATE_REQUEST, origin = ORIGIN.CELERY, joined_task_id = task_id})
  return skip(DEDUP.DUPLICATE_REQUEST)
else
  new = true
end

local function adopt(state, phase)
  local not_after = A.not_after or now + A.deadline_s
  r = new_run(r, A, now)
  r.state, r.phase, r.due_at, r.not_after = state, phase, now, not_after
  r.keep_until = now + A.retention_s + math.max(0, not_after - now)
  call[A.target] = r
  index_task(task_index, name, r, now)
  -- A message no producer recorded (any Celery client, a raw LPUSH): accepted when a worker sees it.
  audit(stream, metrics, A.audit, AUDIT.ACCEPTED, r, A.target, now,
    {origin = ORIGIN.CELERY, due_at = now, not_after = not_after})
end

-- Revoked (celery control revoke) before any run had this task id: the run it would start is
-- cancelled now and never calls the API. A run that already has this task id was indexed when it
-- was recorded (state/cancels.py revoke finds it there, and cancels its record), or, for a Celery
-- message with an ETA, checked against the revoke when it was recorded (state/enqueue.py): only a
-- new run looks for the revoke here.
if new and redis.call('EXISTS', revoked) == 1 then
  adopt(STATE.CANCELLED, nil)
  r.state, r.phase, r.finished_at, r.watch_at = STATE.CANCELLED, nil, now, nil
  r.keep_until = now + A.retention_s
  redis.call('ZREM', schedule, name)
  save_call(key, call, now)
  redis.call('HINCRBY', metrics, counter(COUNTER.STOPS, STATE.CANCELLED), 1)
  audit(stream, metrics, A.audit, AUDIT.CANCELLED, r, A.target, now, {reason = ORIGIN.REVOKE, origin = ORIGIN.REVOKE})
  return cancelled()
end

-- A lock whose holder was reaped (its worker died: state/inflight.py) is over at once: the holder's
-- messages came back, this is one of them, and nobody else is calling the API for it.
local held = r ~= nil and r.lock_until ~= nil and r.lock_until > now
if held and r.lock_consumer ~= nil and not redis.call('ZSCORE', consumers, r.lock_consumer) then
  held = false
end
if held then
  -- Someone holds the stop. Whoever it is, look again when the lock would expire: if the holder
  -- finishes first, that entry is dropped (terminal) or replaced (retry); if the holder died or
  -- could not record its outcome, the stop runs again then instead of being lost.
  local recheck = fmt(now + math.max(A.defer_s, r.lock_until - now))
  if string.sub(r.lock, 1, #task_id + 1) == task_id .. ':' then
    redis.call('ZADD', schedule, 'LT', recheck, name)
    return skip(SKIP.BUSY)
  end
  -- Locked by a different run: this run waits in the schedule until then.
  if new then adopt(STATE.QUEUED, PHASE.WAITING) else r.phase = PHASE.WAITING end
  redis.call('ZADD', schedule, recheck, name)
  save_call(key, call, now)
  return skip(SKIP.DEFERRED)
end
if new then adopt(STATE.QUEUED, PHASE.READY) end
r.lock, r.lock_until, r.lock_consumer = A.lock_token, now + A.lock_ttl_ms / 1000, A.consumer
-- The message is in this worker's in-flight list; the watchdog covers it being lost all the same.
-- Armed when the message was published: armed again only when less than half of it is left.
if r.watch_at == nil or tonumber(r.watch_at) - now < A.watchdog_s / 2 then
  watch(schedule, name, r, now, A.watchdog_s)
end
save_call(key, call, now)
local decision = DECISION.RUN
if r.not_after < now then decision = DECISION.EXPIRED end
return cjson.encode({decision = decision, attempts = r.attempts, auth_id = r.auth_id, not_after = r.not_after})
