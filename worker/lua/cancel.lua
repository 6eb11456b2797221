-- cancel: cancel a pending stop; it is never attempted afterwards.
-- KEYS[1]  call key (recstop:call:<call_uuid>)
-- KEYS[2]  schedule
-- KEYS[3]  metrics
-- ARGV[1]  JSON {member, target, retention_s, events_channel, origin}: the run's task-revoked event
--          goes to events_channel (worker/events.py), published as {origin.hostname, origin.pid}
-- Returns JSON {state, cancelled}: the stop's state afterwards ('missing' when there is none).
local key, schedule, metrics = KEYS[1], KEYS[2], KEYS[3]
local A = cjson.decode(ARGV[1])
local now = now_ms()
local call = load_call(key)
local r = call[A.target]
if r == nil or not pending(r.state) then
  return cjson.encode({state = r and r.state or 'missing', cancelled = false})
end
r.state, r.phase, r.finished_at = 'cancelled', nil, now
r.keep_until, r.watch_at = now + A.retention_s, nil
redis.call('ZREM', schedule, A.member)
save_call(key, call, now)
redis.call('HINCRBY', metrics, 'stops:cancelled', 1)
publish_event(A.events_channel, 'task-revoked', {uuid = r.task_id, terminated = false, expired = false}, A.origin, now)
return cjson.encode({state = 'cancelled', cancelled = true, task_id = r.task_id})
