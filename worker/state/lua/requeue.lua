-- requeue: hand one fetched message back to its list (a reject with requeue, or a shutdown).
-- KEYS[1]  the consumer's in-flight list
-- KEYS[2]  the list (source) the message came from
-- ARGV[1]  JSON {head}: true puts it at the head (next to be taken), false at the tail
-- ARGV[2]  the message, byte for byte as fetched
-- ARGV[3]  what goes back in its place: the message itself, or the message marked redelivered
-- Returns JSON {requeued}: true when it was in flight and is back in the list, false when it was
-- not in flight (already acked, or reaped).
local inflight, lane = KEYS[1], KEYS[2]
local A = cjson.decode(ARGV[1])
if redis.call('LREM', inflight, 1, ARGV[2]) == 0 then return cjson.encode({requeued = false}) end
if A.head then redis.call('RPUSH', lane, ARGV[3]) else redis.call('LPUSH', lane, ARGV[3]) end
return cjson.encode({requeued = true})
