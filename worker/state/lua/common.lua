-- Shared helpers, after the generated prelude (state/prelude.py: STATE, OUTCOME, AUDIT, COUNTER,
-- member() ...) and before every recstop script (state/scripts.py).
-- Every script takes its keys in KEYS (state/keys.py builds them) and its arguments as one JSON
-- object in ARGV[1] (absent fields are nil; Python never sends null), and answers JSON, except
-- fetch.lua, whose reply carries messages byte for byte. Words and key parts come from the prelude:
-- a string literal here is a Redis command, a JSON field name or a message text, never a word of
-- the vocabulary (tests/unit/test_lua_words.py checks).

-- Redis' clock, read once per script run (a script is atomic: one moment): {seconds, microseconds}.
local script_time = nil
local function redis_time()
  if script_time == nil then script_time = redis.call('TIME') end
  return script_time
end

-- Redis' clock, in seconds.
local function now_s()
  local t = redis_time()
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Redis' clock to the millisecond: what every stop record and dead letter stores.
local function now_ms()
  local t = redis_time()
  return tonumber(t[1]) + math.floor(tonumber(t[2]) / 1000) / 1000
end

-- Redis' clock as ISO 8601 in UTC with microseconds (a Celery result's date_done), the civil date
-- from the days since 1970 (H. Hinnant's days_from_civil, inverted).
local function now_iso()
  local t = redis_time()
  local secs, us = tonumber(t[1]), tonumber(t[2])
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00', year, month, day,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, us)
end

local function fmt(x)
  return string.format('%.3f', x)
end

local function pending(state)
  return state ~= nil and PENDING[state] == true
end

-- text with every `placeholder` replaced by `value`, both taken literally (no patterns).
local function fill(text, placeholder, value)
  local out, from = {}, 1
  while true do
    local i, j = string.find(text, placeholder, from, true)
    if i == nil then break end
    table.insert(out, string.sub(text, from, i - 1))
    table.insert(out, value)
    from = j + 1
  end
  table.insert(out, string.sub(text, from))
  return table.concat(out)
end

-- A string as it is written inside a JSON string (escaped, without the quotes).
local function json_text(value)
  return string.sub(cjson.encode(value), 2, -2)
end

-- A call's stop records (state/keys.py call_key): target -> record.
local function load_call(key)
  local raw = redis.call('GET', key)
  if not raw then return {} end
  return cjson.decode(raw)
end

-- Write a call's records back; a record whose keep_until passed is dropped, and the key expires
-- with its last record.
local function save_call(key, call, now)
  local last = nil
  for target, r in pairs(call) do
    if r.keep_until ~= nil and r.keep_until < now then
      call[target] = nil
    else
      last = math.max(last or now, r.keep_until or now)
    end
  end
  if last == nil then
    redis.call('DEL', key)
    return
  end
  redis.call('SET', key, cjson.encode(call), 'EX', math.max(1, math.ceil(last - now)))
end

-- A finished run, remembered so that its message delivered again never calls the API twice.
local DONE_KEPT = 16
local function remember(r, task_id, state)
  local done = r.done or {}
  table.insert(done, {task_id, state})
  while #done > DONE_KEPT do table.remove(done, 1) end
  r.done = done
end

local function finished_before(r, task_id)
  for _, d in ipairs(r.done or {}) do
    if d[1] == task_id then return true end
  end
  return false
end

-- A new run of a stop (fields: task_id, call_uuid, url, auth_id, request_id, dlq_id): it keeps the
-- previous run's finished task ids, its dead letter (removed once this run succeeds) and a lock
-- still held by a worker calling the API for the previous run.
local function new_run(prev, f, now)
  local r = {call_uuid = f.call_uuid, url = f.url, auth_id = f.auth_id, request_id = f.request_id,
    task_id = f.task_id, attempts = 0, enqueued_at = now, dlq_id = f.dlq_id}
  if prev ~= nil then
    r.done = prev.done
    if prev.task_id ~= nil then remember(r, prev.task_id, prev.state) end
    r.dlq_id = r.dlq_id or prev.dlq_id
    if prev.lock_until ~= nil and prev.lock_until > now then
      r.lock, r.lock_until, r.lock_consumer = prev.lock, prev.lock_until, prev.lock_consumer
    end
  end
  return r
end

-- Arm the stop's watchdog: if nothing settles the stop before then, the scheduler publishes it
-- again (a message deleted by hand, lost with writes a failover dropped, or acknowledged without
-- its outcome recorded). Each firing doubles the next wait.
local function watch(schedule, name, r, now, watchdog_s)
  local at = fmt(now + watchdog_s * 2 ^ math.min(r.republished or 0, 5))
  redis.call('ZADD', schedule, at, name)
  r.watch_at = at
end

-- Delete hash fields in chunks (unpack is bounded by Lua's stack).
local function hdel_all(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end

-- Add one dead letter and keep the store within its count and age bounds.
local function dlq_add(index, entries, id, entry, now, max_entries, max_age_s)
  redis.call('HSET', entries, id, cjson.encode(entry))
  -- Scored to the microsecond, so that the index keeps the order dead letters came in.
  redis.call('ZADD', index, string.format('%.6f', now_s()), id)
  local cutoff = '(' .. fmt(now - max_age_s)
  local old = redis.call('ZRANGE', index, '-inf', cutoff, 'BYSCORE')
  if #old > 0 then
    hdel_all(entries, old)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', cutoff)
  end
  local extra = redis.call('ZCARD', index) - max_entries
  if extra > 0 then
    hdel_all(entries, redis.call('ZRANGE', index, 0, extra - 1))
    redis.call('ZREMRANGEBYRANK', index, 0, extra - 1)
  end
end

-- The task index (state/keys.py task_key): task id -> the stop's schedule member, kept as long
-- as the run's record, so that a revoke by task id finds its stop.
local function index_task(key, name, r, now)
  if key ~= nil then
    redis.call('SET', key, name, 'EX', math.max(1, math.ceil((r.keep_until or now + 1) - now)))
  end
end

-- A message of another task id that joined this pending run (it makes no DELETE of its own): kept
-- (the last JOINED_KEPT), so that its result is written with the run's, and indexed, so that a
-- revoke of it is answered truthfully.
local JOINED_KEPT = 16
local function join(r, task_id, index_key, name, now)
  if task_id == nil or task_id == r.task_id then return end
  local joined = r.joined or {}
  for _, id in ipairs(joined) do
    if id == task_id then return end
  end
  table.insert(joined, task_id)
  while #joined > JOINED_KEPT do table.remove(joined, 1) end
  r.joined = joined
  index_task(index_key, name, r, now)
end

-- A task's result as Celery's Redis result backend keeps it (state/results.py builds the record's
-- template, this fills it), so that AsyncResult.state and .get() say what the stop's record says:
-- SET with its lifetime, and PUBLISHed on the key's own channel, where a waiting .get() listens.
-- R: {expires_s, meta}; date_done is Redis' clock. No result is written when expires_s is 0 (results off)
-- or the key is absent.
local function store_result(key, R, task_id, status, result)
  if key == nil or R == nil or (R.expires_s or 0) <= 0 then return end
  local meta = fill(R.meta, PLACEHOLDER.META_STATUS, status)
  -- cjson writes an empty table as {}: a result's recordings are a list, [] when there are none.
  meta = fill(meta, PLACEHOLDER.META_RESULT, fill(cjson.encode(result), '"recordings":{}', '"recordings":[]'))
  meta = fill(meta, PLACEHOLDER.META_TASK_ID, json_text(task_id))
  meta = fill(meta, PLACEHOLDER.META_DATE_DONE, now_iso())
  redis.call('SET', key, meta, 'EX', R.expires_s)
  redis.call('PUBLISH', key, meta)
end

-- The Celery result of a finished or waiting run (state/results.py documents the mapping).
local function exc(exc_type, module, message)
  return {exc_type = exc_type, exc_module = module, exc_message = message}
end
local function stop_dead(reason, error)
  return exc(STOP_DEAD.exc_type, STOP_DEAD.exc_module, {reason, error or ''})
end
local function result_of(r, state, detail, attempt, http_status)
  if SUCCEEDED[state] then
    local result = {state = state, detail = detail or '', attempt = attempt or cjson.null,
      http_status = http_status or cjson.null}
    if r ~= nil and r.confirmation ~= nil then
      -- What Vobiz confirms of the recordings (state/keys.py: the record's confirmation fields).
      result.confirmation, result.confirm_reason = r.confirmation, r.confirm_reason
      result.recordings, result.ended_after_ms = r.recordings or {}, r.ended_after_ms
    end
    return CELERY_STATE.SUCCESS, result
  elseif state == STATE.DEAD then
    return CELERY_STATE.FAILURE, stop_dead(detail or r.dead_reason or STATE.DEAD, r.last_error)
  elseif state == STATE.CANCELLED then
    return CELERY_STATE.REVOKED, exc('TaskRevokedError', 'celery.exceptions', {STATE.CANCELLED})
  elseif state == STATE.RETRYING then
    return CELERY_STATE.RETRY, exc('Retry', 'celery.exceptions', {'next attempt at ' .. fmt(r.due_at)})
  end
  return nil, nil
end

-- The audit outbox (state/keys.py AUDIT_STREAM; audit/event.py reads it): each event of a stop's
-- life is appended by the script that makes it happen, so the trail can neither miss what happened
-- nor record what did not. Never a token (the scripts never see one). Bounded: past AU.max entries
-- (no sink draining it) the oldest go, counted in COUNTER.AUDIT_DROPPED.
-- AU: {max, origin}; max 0 turns the outbox off. e: the event's own fields.
-- The outbox's length is read once in a script run, at its first event, and counted on from there.
local audit_length = nil
local function audit(stream, metrics, AU, name, r, target, now, e)
  if stream == nil or AU == nil or (AU.max or 0) <= 0 then return end
  e = e or {}
  e.event, e.at, e.target = name, now, target
  if r ~= nil then
    e.call_uuid = e.call_uuid or string.lower(r.call_uuid or '')
    e.url, e.auth_id, e.request_id = e.url or r.url, e.auth_id or r.auth_id, e.request_id or r.request_id
    e.task_id = e.task_id or r.task_id
    if r.urgent then e.urgent = true end
  end
  redis.call('XADD', stream, '*', 'e', cjson.encode(e))
  if audit_length == nil then audit_length = redis.call('XLEN', stream) else audit_length = audit_length + 1 end
  if audit_length > AU.max then
    redis.call('HINCRBY', metrics, COUNTER.AUDIT_DROPPED, redis.call('XTRIM', stream, 'MAXLEN', AU.max))
    audit_length = AU.max
  end
end
