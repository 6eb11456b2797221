-- The message is published: its schedule entry (if nobody rescheduled it) becomes the watchdog.
-- KEYS: schedule, status   ARGV: member, score, watchdog_s
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and string.format('%.3f', tonumber(score)) == ARGV[2] then
  if pending(redis.call('HGET', KEYS[2], 'state')) then
    watch(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[3]))
  else
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
  return 1
end
return 0
