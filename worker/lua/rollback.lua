-- Undo an enqueue whose message could not be published.
-- KEYS: status, schedule   ARGV: member, task_id
if redis.call('HGET', KEYS[1], 'task_id') == ARGV[2] and redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
