-- Remove a schedule entry only if it still has the score we set (nobody rescheduled it).
-- KEYS: schedule   ARGV: member, score
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and string.format('%.3f', tonumber(score)) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
