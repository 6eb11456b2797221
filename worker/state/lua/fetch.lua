-- fetch: move up to `count` waiting messages into this consumer's in-flight lists, in list order.
-- KEYS[1]     this consumer's sources set (recstop:sources:<consumer>): every list a message is
--             moved from is named there in the same script, so a reaper finds the in-flight list
-- KEYS[2k]    source k: a queue's list, in the order they are taken from (urgent lane first)
-- KEYS[2k+1]  this consumer's in-flight list for source k (recstop:inflight:<consumer>:<source>)
-- ARGV[1]     JSON {count, sources, pop}: sources[k] names source k as kombu does (no global key
--             prefix); pop lists the k of queues consumed without acks, whose messages are popped
--             as kombu pops them (what no_ack asks for), into no in-flight list
-- Returns a flat array: source index (1-based), message, source index, message, ... Not JSON, on
-- purpose: the messages are the lists' items as stored, byte for byte (an ack removes exactly that
-- item), and a poison item may be any bytes, which JSON cannot carry.
-- Each move is one LMOVE inside this script: no message is ever outside Redis between its list
-- and the consumer's in-flight list.
local registry = KEYS[1]
local A = cjson.decode(ARGV[1])
local pop = {}
for _, k in ipairs(A.pop or {}) do pop[k] = true end
local out = {}
local left = A.count
for k = 1, (#KEYS - 1) / 2 do
  local moved = false
  while left > 0 do
    local message
    if pop[k] then
      message = redis.call('RPOP', KEYS[2 * k])
    else
      message = redis.call('LMOVE', KEYS[2 * k], KEYS[2 * k + 1], 'RIGHT', 'LEFT')
    end
    if not message then break end
    table.insert(out, k)
    table.insert(out, message)
    left = left - 1
    moved = true
  end
  if moved and not pop[k] then redis.call('SADD', registry, A.sources[k]) end
  if left == 0 then break end
end
return out
