-- Cancel a pending stop.  KEYS: status, schedule   ARGV: member, retention_s, task_prefix
local state = redis.call('HGET', KEYS[1], 'state')
if not pending(state) then
  return {state or 'missing', '0'}
end
local now = now_s()
local task_id = redis.call('HGET', KEYS[1], 'task_id')
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'phase', 'done', 'finished_at', fmt(now))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', ARGV[3] .. task_id, 'cancelled', 'EX', tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return {'cancelled', '1'}
