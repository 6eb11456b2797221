-- Dead-letter a message that never became a stop (malformed).
-- KEYS: dlq_index   ARGV: entry_prefix, entry_id, max_entries, max_age_s, field, value, ...
local now = now_s()
local fields = {}
for i = 5, #ARGV do table.insert(fields, ARGV[i]) end
table.insert(fields, 'dead_at')
table.insert(fields, fmt(now))
dlq_add(KEYS[1], ARGV[1], ARGV[2], fields, now, tonumber(ARGV[3]), tonumber(ARGV[4]))
-- Counted for `recstop metrics` (worker/keys.py METRICS) by the reason it was refused with.
for i = 5, #ARGV - 1, 2 do
  if ARGV[i] == 'reason' then
    redis.call('HINCRBY', (string.gsub(KEYS[1], ':dlq$', ':metrics')), 'rejected:' .. ARGV[i + 1], 1)
  end
end
return fmt(now)
