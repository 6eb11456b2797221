-- Remove dead letters by id (all of them when no id is given).
-- KEYS: dlq_index   ARGV: entry_prefix, id, ...
local ids = {}
if #ARGV == 1 then ids = redis.call('ZRANGE', KEYS[1], 0, -1) else
  for i = 2, #ARGV do table.insert(ids, ARGV[i]) end
end
local removed = 0
for _, id in ipairs(ids) do
  removed = removed + redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', ARGV[1] .. id)
end
return removed
