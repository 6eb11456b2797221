-- beat: a consumer's heartbeat; also name the consumers whose heartbeat stopped.
-- KEYS[1]  consumers (recstop:consumers): consumer id -> its last heartbeat (Redis time)
-- ARGV[1]  JSON {consumer, timeout_s}
-- Returns JSON {now, stale, joined}: Redis time, the consumers silent for longer than timeout_s,
-- and joined when this consumer was not listed (its first beat, or a reaper took it for gone).
local consumers = KEYS[1]
local A = cjson.decode(ARGV[1])
local now = now_s()
local added = redis.call('ZADD', consumers, string.format('%.6f', now), A.consumer)
local stale = redis.call('ZRANGE', consumers, '-inf', '(' .. string.format('%.6f', now - A.timeout_s), 'BYSCORE')
local out = {now = now}
if #stale > 0 then out.stale = stale end
if added == 1 then out.joined = true end
return cjson.encode(out)
