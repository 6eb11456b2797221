-- deadletter: dead-letter a message that never became a stop (malformed or refused).
-- KEYS[1]  dead-letter index (recstop:dlq)    KEYS[2]  dead-letter entries (recstop:dlq:entries)
-- KEYS[3]  metrics
-- ARGV[1]  JSON {entry: {id, reason, task_id, error, payload, ...}, max_entries, max_age_s}
-- Returns JSON {dead_at}.
local index, entries, metrics = KEYS[1], KEYS[2], KEYS[3]
local A = cjson.decode(ARGV[1])
local now = now_ms()
local entry = A.entry
entry.dead_at = now
dlq_add(index, entries, entry.id, entry, now, A.max_entries, A.max_age_s)
-- Counted for `recstop metrics` by the reason it was refused with.
redis.call('HINCRBY', metrics, counter(COUNTER.REJECTED, entry.reason), 1)
return cjson.encode({dead_at = now})
