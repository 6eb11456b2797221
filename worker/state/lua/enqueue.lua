-- enqueue: record a new run for each stop unless one is already pending; push the stops due now.
-- KEYS[1]    schedule (recstop:schedule)
-- KEYS[2]    lane: the queue every stop of this call goes to (recstop or recstop.urgent)
-- KEYS[3]    audit outbox (recstop:audit)      KEYS[4]  metrics (its dropped count)
-- KEYS[4+i]  call key of stop i (recstop:call:<call_uuid>), for i = 1..n
-- KEYS[4+n+i] task index entry of stop i's task id (recstop:task:<task_id>)
-- KEYS[5+2n] (with ack) the in-flight list holding the Celery message this enqueue replaces
-- KEYS[#KEYS] (with results) the Celery result of the one stop's task id (a received message)
-- ARGV[1]    JSON {deadline_s, retention_s, watchdog_s, urgent, events_channel, events: {head, tail},
--            ack, results, audit: {max, origin}, stops: [{member, target, task_id, call_uuid, url,
--            auth_id, request_id,
--            not_after, delay_s, at, dlq_id, replay, keep_expired, join}]}:
--            replay (with dlq_id: a dead letter replayed) is what the dead run did (model/status.py
--            ReplayedFrom); the new run keeps it as replayed_from, counting in attempts_before the
--            attempts of the runs before the dead one too
--            join (a received Celery message) records the task id of a stop that joins a pending
--            run (its result is written with the run's); keep_expired records a stop whose
--            not_after is past, or before it is due, as it is (the worker dead-letters it, reason
--            deadline, when it is due) instead of refusing it: a Celery message with eta and
--            expires is never refused once received
-- ARGV[2i]   stop i's task message, its task id PLACEHOLDER.TASK_ID (state/envelope.py)
-- ARGV[2i+1] stop i's task-sent event's fields (state/taskevents.py task_sent_body): the events of
--            the stops that start a new run are published once, at the end, as one group (Celery's
--            task.multi) on events_channel: events.head, the JSON list as a JSON string, events.tail
-- ARGV[2n+2] (with ack) that Celery message, byte for byte as fetched: acknowledged (removed from
--            the in-flight list) in this script, so it is in the schedule or in the list, never
--            in neither and never in both
-- Returns JSON, one reply per stop in order: {task_id, deduplicated, state, pushed} or {error,
-- not_after, due, deadline_s}: why the stop was refused, its not_after and due time (deadline_s
-- when not_after was the default, due + deadline_s).
-- A stop due now is recorded and pushed in this one script, and its schedule entry becomes its
-- watchdog: one round trip, nothing to reconcile if the producer dies.
local schedule, lane, stream, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local A = cjson.decode(ARGV[1])
local result_key = A.results and KEYS[#KEYS]
local deadline_s, retention_s, watchdog_s = A.deadline_s, A.retention_s, A.watchdog_s
local urgent = A.urgent == true
local now = now_ms()
-- The task-sent events of the stops that start a new run, published together at the end.
local sent_events = {}

local function push(r, name, message)
  redis.call('LPUSH', lane, fill(message, PLACEHOLDER.TASK_ID, json_text(r.task_id)))
  watch(schedule, name, r, now, watchdog_s)
  if urgent then r.urgent = true end
end

local function reply(r, deduplicated, pushed)
  return {task_id = r.task_id, deduplicated = deduplicated, state = r.state, pushed = pushed}
end

local function enqueue(key, task_index, s, message, sent)
  local call = load_call(key)
  local cur = call[s.target]
  local due = now
  if s.at ~= nil then due = s.at elseif s.delay_s ~= nil then due = now + s.delay_s end
  local function deduplicated(reason)
    audit(stream, metrics, A.audit, AUDIT.DEDUPLICATED, cur, s.target, now,
      {reason = reason, origin = A.audit and A.audit.origin, joined_task_id = s.join and s.task_id or nil})
  end
  if cur ~= nil and pending(cur.state) then
    if s.join then join(cur, s.task_id, task_index, s.member, now); save_call(key, call, now) end
    deduplicated(DEDUP.PENDING)
    -- Deduplicated. A stop wanted sooner than a scheduled one pulls it forward: "stop now" must
    -- never wait for a stop that was scheduled for later.
    if cur.state == STATE.SCHEDULED and cur.phase == PHASE.WAITING and due < cur.due_at then
      if due <= now then
        cur.state, cur.phase, cur.due_at = STATE.QUEUED, PHASE.READY, now
        push(cur, s.member, message)
        save_call(key, call, now)
        return reply(cur, true, true)
      end
      cur.due_at = due
      redis.call('ZADD', schedule, fmt(due), s.member)
      save_call(key, call, now)
    end
    if urgent and due <= now and cur.state == STATE.QUEUED and not cur.urgent then
      -- An urgent stop must not wait behind the routine backlog its pending twin sits in: the
      -- same run goes onto the urgent lane too; whichever copy a worker takes first does the
      -- stop, the other is recognised as a duplicate of a finished run.
      push(cur, s.member, message)
      save_call(key, call, now)
      return reply(cur, true, true)
    end
    return reply(cur, true, false)
  end
  if s.request_id ~= nil and cur ~= nil and cur.request_id == s.request_id and SUCCEEDED[cur.state] then
    -- The same request (same request_id) already stopped this recording: a producer's retry.
    deduplicated(DEDUP.DUPLICATE_REQUEST)
    if s.join then
      -- A received message of a request that already stopped this recording: its result is the stop's.
      store_result(result_key, A.results, s.task_id, result_of(cur, cur.state, 'duplicate of ' .. cur.task_id))
    end
    return reply(cur, true, false)
  end
  local not_after = s.not_after or due + deadline_s
  if not s.keep_expired and (not_after <= now or not_after < due) then
    local why = 'is before the time the stop is due'
    if not_after <= now then why = "is already past by Redis' clock" end
    local defaulted = nil
    if s.not_after == nil then defaulted = deadline_s end
    return {error = why, not_after = not_after, due = due, deadline_s = defaulted}
  end
  local r = new_run(cur, s, now)
  r.due_at, r.not_after = due, not_after
  if s.replay ~= nil then
    local before = s.replay.attempts or 0
    if cur ~= nil and cur.task_id == s.replay.task_id and cur.replayed_from ~= nil then
      before = before + (cur.replayed_from.attempts_before or 0)  -- the dead run was a replay too
    end
    s.replay.attempts_before = before
    r.replayed_from = s.replay
  end
  r.keep_until = now + retention_s + math.max(due, not_after) - now
  call[s.target] = r
  index_task(task_index, s.member, r, now)
  if urgent then r.urgent = true end  -- a delayed urgent stop goes to the urgent lane when it is due
  if due > now then
    r.state, r.phase = STATE.SCHEDULED, PHASE.WAITING
    redis.call('ZADD', schedule, fmt(due), s.member)
  else
    r.state, r.phase = STATE.QUEUED, PHASE.READY
    push(r, s.member, message)
  end
  save_call(key, call, now)
  table.insert(sent_events, sent)
  audit(stream, metrics, A.audit, s.dlq_id and AUDIT.REPLAYED or AUDIT.ACCEPTED, r, s.target, now,
    {origin = A.audit and A.audit.origin, due_at = due, not_after = not_after, dlq_id = s.dlq_id})
  return reply(r, false, r.state == STATE.QUEUED)
end

local n = #A.stops
local out = {}
for i, s in ipairs(A.stops) do
  out[i] = enqueue(KEYS[4 + i], KEYS[4 + n + i], s, ARGV[2 * i], ARGV[2 * i + 1])
end
if #sent_events > 0 then
  redis.call('PUBLISH', A.events_channel,
    A.events.head .. cjson.encode('[' .. table.concat(sent_events, ',') .. ']') .. A.events.tail)
end
if A.ack then redis.call('LREM', KEYS[5 + 2 * n], 1, ARGV[2 * n + 2]) end
return cjson.encode(out)
