-- publish: push the messages of leased stops that are still pending; arm their watchdogs.
-- KEYS[1]    schedule
-- KEYS[2]    routine lane (recstop)      KEYS[3]  urgent lane (recstop.urgent)
-- KEYS[4]    metrics
-- KEYS[4+i]  call key of item i
-- ARGV[1]    JSON {watchdog_s, events_channel, items: [{member, target, task_id, score, lease}]}:
--            what claim leased, with the task id of the run whose message follows
-- ARGV[2i]   item i's task message, its task id PLACEHOLDER.TASK_ID (state/envelope.py)
-- ARGV[2i+1] item i's task-sent event (state/taskevents.py), published with the message
-- Returns JSON [{published, republished}] per item: whether its message went out, and how often
-- this run's watchdog has fired (0 for an ordinary due entry).
local schedule, routine, urgent, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local A = cjson.decode(ARGV[1])
local now = now_ms()
local out = {}

local function publish(key, item, message, sent)
  local score = redis.call('ZSCORE', schedule, item.member)
  if not score or fmt(tonumber(score)) ~= item.lease then
    return {published = false, republished = 0}  -- rescheduled, settled or cancelled meanwhile
  end
  local call = load_call(key)
  local r = call[item.target]
  if r == nil or not pending(r.state) then
    redis.call('ZREM', schedule, item.member)
    return {published = false, republished = 0}
  end
  if r.task_id ~= item.task_id then
    return {published = false, republished = 0}  -- a newer run: its own entry publishes it
  end
  local republished = 0
  if r.watch_at == item.score then
    -- The watchdog fired: the stop's message was published but nothing settled it.
    r.republished = (r.republished or 0) + 1
    republished = r.republished
    redis.call('HINCRBY', metrics, COUNTER.WATCHDOG_REPUBLISHES, 1)
  end
  r.phase = PHASE.READY
  if r.state == STATE.SCHEDULED then r.state = STATE.QUEUED end
  local lane = routine
  if r.urgent then lane = urgent end
  redis.call('LPUSH', lane, fill(message, PLACEHOLDER.TASK_ID, json_text(r.task_id)))
  watch(schedule, item.member, r, now, A.watchdog_s)
  save_call(key, call, now)
  redis.call('PUBLISH', A.events_channel, sent)
  return {published = true, republished = republished}
end

for i, item in ipairs(A.items) do
  out[i] = publish(KEYS[4 + i], item, ARGV[2 * i], ARGV[2 * i + 1])
end
return cjson.encode(out)
