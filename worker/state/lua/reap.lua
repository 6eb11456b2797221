-- reap: move every in-flight message of consumers that stopped back to the head of its lane.
-- KEYS[1]         consumers (recstop:consumers)
-- KEYS[2..]       per consumer i, per source k: the source list, then consumer i's in-flight list
--                 for it (sources_per_consumer pairs each, consumers in the order of ARGV)
-- ARGV[1]         JSON {consumers, sources_per_consumer, stale_before}: stale_before (Redis time) is
--                 absent when a consumer hands back its own messages (at shutdown)
-- Returns JSON [requeued per consumer]; a consumer that beat again since it was named is left
-- alone (0), so of several workers reaping at once exactly one moves each message.
-- The oldest fetched message goes back to the very head: the lane's order is kept.
local consumers = KEYS[1]
local A = cjson.decode(ARGV[1])
local out = {}
local n = A.sources_per_consumer
for i, consumer in ipairs(A.consumers) do
  local score = tonumber(redis.call('ZSCORE', consumers, consumer))
  local moved = 0
  if A.stale_before == nil or (score ~= nil and score < A.stale_before) then
    for k = 1, n do
      local base = 1 + ((i - 1) * n + (k - 1)) * 2
      local source, inflight = KEYS[base + 1], KEYS[base + 2]
      while redis.call('LMOVE', inflight, source, 'LEFT', 'RIGHT') do moved = moved + 1 end
    end
    redis.call('ZREM', consumers, consumer)
  end
  out[i] = moved
end
return cjson.encode(out)
