-- dlq_remove: remove dead letters by id, or all of them.
-- KEYS[1]  dead-letter index (recstop:dlq)    KEYS[2]  dead-letter entries (recstop:dlq:entries)
-- ARGV[1]  JSON {ids}: the ids to remove (absent: every dead letter)
-- Returns JSON {removed}: how many existed.
local index, entries = KEYS[1], KEYS[2]
local A = cjson.decode(ARGV[1])
local ids = A.ids
if ids == nil then ids = redis.call('ZRANGE', index, 0, -1) end
local removed = 0
for _, id in ipairs(ids) do
  removed = removed + redis.call('ZREM', index, id)
  redis.call('HDEL', entries, id)
end
return cjson.encode({removed = removed})
