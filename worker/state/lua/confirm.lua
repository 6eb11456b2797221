-- confirm: record one lookup of a stopped stop's recordings: look again later, or settle its
-- confirmation (the record, the audit trail, the metrics and the Celery result, in this one call).
-- KEYS[1]  call key (recstop:call:<call_uuid>)
-- KEYS[2]  the confirmations' schedule (recstop:confirm)
-- KEYS[3]  metrics              KEYS[4]  audit outbox (recstop:audit)
-- KEYS[5]  the Celery result of the run's task id (celery-task-meta-<task_id>)
-- ARGV[1]  JSON {member, target, task_id, lease, confirmation, reason, error, recordings, next_s,
--          looked_up, buckets, results: {expires_s, meta}, audit: {max, origin}}:
--          lease: the schedule score the caller's claim gave the entry (a lookup that lost its lease
--          records nothing); confirmation: a CONFIRMATION word settles it, absent: look again
--          next_s later (never after the deadline: the last lookup comes at it); looked_up: false
--          when no lookup was made (no rate-limit slot free), so none is counted; recordings: the
--          covered recordings (model/recording.py); buckets: the ended-after histogram's bounds.
-- Returns JSON {recorded, settled, joined, result_status, result}: recorded false when nothing was
-- (the stop has a newer run, is no longer pending confirmation, or another worker holds the lease);
-- settled: the confirmation is final; joined: the task ids whose result the caller writes as well.
local key, confirms, metrics, stream, result_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local A = cjson.decode(ARGV[1])
local now = now_ms()
local function count(field, by) redis.call('HINCRBY', metrics, field, by or 1) end

local score = redis.call('ZSCORE', confirms, A.member)
if not score or fmt(tonumber(score)) ~= A.lease then
  return cjson.encode({recorded = false})
end
local call = load_call(key)
local r = call[A.target]
if r == nil or r.task_id ~= A.task_id or r.confirmation ~= CONFIRMATION.PENDING then
  redis.call('ZREM', confirms, A.member)
  return cjson.encode({recorded = false})
end
if A.looked_up then
  r.confirm_lookups = (r.confirm_lookups or 0) + 1
  count(COUNTER.LOOKUPS)
end

if A.confirmation == nil then
  local due = math.min(now + A.next_s, r.confirm_until)
  redis.call('ZADD', confirms, fmt(due), A.member)
  save_call(key, call, now)
  return cjson.encode({recorded = true, settled = false})
end

-- Settled. How long each recording ran on after the stop was due (negative: it had ended before).
local latest = nil
for _, rec in ipairs(A.recordings or {}) do
  if rec.recording_end_ms ~= nil then
    local after_ms = rec.recording_end_ms - r.due_at * 1000
    rec.ended_after_ms = math.floor(after_ms * 10 + 0.5) / 10
    latest = math.max(latest or after_ms, after_ms)
    local secs = math.max(0, after_ms / 1000)
    local le = '+Inf'
    for _, b in ipairs(A.buckets) do
      if secs <= tonumber(b) then le = b; break end
    end
    count(COUNTER.ENDED_AFTER_COUNT)
    count(counter(COUNTER.ENDED_AFTER_BUCKET, le))
    redis.call('HINCRBYFLOAT', metrics, COUNTER.ENDED_AFTER_SUM, string.format('%.6f', secs))
    audit(stream, metrics, A.audit, AUDIT.RECORDING_CONFIRMED, r, A.target, now, {url = rec.recording_url,
      recording_id = rec.recording_id, recording_start_ms = rec.recording_start_ms,
      recording_end_ms = rec.recording_end_ms, recording_duration_ms = rec.recording_duration_ms,
      ended_after_ms = rec.ended_after_ms})
  end
end
r.confirmation, r.confirm_reason, r.confirm_error = A.confirmation, A.reason, A.error
r.recordings, r.ended_after_ms, r.confirmed_at = A.recordings, latest, now
redis.call('ZREM', confirms, A.member)
count(counter(COUNTER.CONFIRMATIONS, A.confirmation))
if A.confirmation == CONFIRMATION.UNCONFIRMED then
  count(counter(COUNTER.UNCONFIRMED, A.reason))
  audit(stream, metrics, A.audit, AUDIT.CONFIRMATION_FAILED, r, A.target, now,
    {reason = A.reason, error = A.error})
end
local status, result = result_of(r, r.state, '', r.attempts, r.last_http_status)
store_result(result_key, A.results, r.task_id, status, result)
local reply = {recorded = true, settled = true, joined = r.joined, result_status = status, result = result}
r.joined = nil
save_call(key, call, now)
return cjson.encode(reply)
