-- beat: a consumer's heartbeat; also name the consumers whose heartbeat stopped.
-- KEYS[1]  consumers (recstop:consumers): consumer id -> its last heartbeat (Redis time)
-- ARGV[1]  JSON {consumer, timeout_s}
-- Returns JSON {now, stale}: Redis time, and the consumers silent for longer than timeout_s.
local consumers = KEYS[1]
local A = cjson.decode(ARGV[1])
local now = now_s()
redis.call('ZADD', consumers, string.format('%.6f', now), A.consumer)
local stale = redis.call('ZRANGE', consumers, '-inf', '(' .. string.format('%.6f', now - A.timeout_s), 'BYSCORE')
local out = {now = now}
if #stale > 0 then out.stale = stale end
return cjson.encode(out)
