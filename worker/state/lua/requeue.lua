-- requeue: hand one fetched message back to its lane (a reject with requeue, or a shutdown).
-- KEYS[1]  the consumer's in-flight list
-- KEYS[2]  the lane (source list) the message came from
-- ARGV[1]  JSON {head}: true puts it at the head (next to be taken), false at the tail
-- ARGV[2]  the message, byte for byte as fetched
-- Returns JSON {requeued}: true when it was in flight and is back in the lane, false when it was
-- not in flight (already acked, or reaped).
local inflight, lane = KEYS[1], KEYS[2]
local A = cjson.decode(ARGV[1])
if redis.call('LREM', inflight, 1, ARGV[2]) == 0 then return cjson.encode({requeued = false}) end
if A.head then redis.call('RPUSH', lane, ARGV[2]) else redis.call('LPUSH', lane, ARGV[2]) end
return cjson.encode({requeued = true})
