-- reap: move every in-flight message of consumers that stopped back to the head of its list.
-- KEYS[1]         consumers (recstop:consumers)
-- KEYS[2..]       per consumer, in the order of ARGV: its sources set (recstop:sources:<consumer>),
--                 then per source k: the source list, then the consumer's in-flight list for it
-- ARGV[1]         JSON {consumers: [{id, sources}], stale_before}: sources[k] names source k as the
--                 sources set does; stale_before (Redis time) is absent when a consumer hands back
--                 its own messages (at shutdown)
-- Returns JSON [requeued per consumer]; a consumer that beat again since it was named is left
-- alone (0), so of several workers reaping at once exactly one moves each message.
-- The oldest fetched message goes back to the very head: the list's order is kept.
local consumers = KEYS[1]
local A = cjson.decode(ARGV[1])
local out = {}
local base = 2
for i, c in ipairs(A.consumers) do
  local registry = KEYS[base]
  local n = #c.sources
  local score = tonumber(redis.call('ZSCORE', consumers, c.id))
  local moved = 0
  if A.stale_before == nil or (score ~= nil and score < A.stale_before) then
    for k = 1, n do
      local source, inflight = KEYS[base + 2 * k - 1], KEYS[base + 2 * k]
      while redis.call('LMOVE', inflight, source, 'LEFT', 'RIGHT') do moved = moved + 1 end
      redis.call('SREM', registry, c.sources[k])
    end
    -- A list named after the reaper read the set (so the consumer was alive) keeps the consumer
    -- listed: a later beat finds it silent again, and reaps that list too.
    if redis.call('SCARD', registry) == 0 then redis.call('ZREM', consumers, c.id) end
  end
  out[i] = moved
  base = base + 1 + 2 * n
end
return cjson.encode(out)
