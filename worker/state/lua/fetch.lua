-- fetch: move up to `count` waiting messages into this consumer's in-flight lists, in lane order.
-- KEYS[2k-1]  source k: a lane list, in the order they are taken from (urgent first)
-- KEYS[2k]    this consumer's in-flight list for source k (recstop:inflight:<consumer>:<source>)
-- ARGV[1]     JSON {count}
-- Returns a flat array: source index (1-based), message, source index, message, ... Not JSON, on
-- purpose: the messages are the lanes' items as stored, byte for byte (an ack removes exactly that
-- item), and a poison item may be any bytes, which JSON cannot carry.
-- Each move is one LMOVE inside this script: no message is ever outside Redis between its lane
-- and the consumer's in-flight list.
local A = cjson.decode(ARGV[1])
local out = {}
local left = A.count
for k = 1, #KEYS / 2 do
  while left > 0 do
    local message = redis.call('LMOVE', KEYS[2 * k - 1], KEYS[2 * k], 'RIGHT', 'LEFT')
    if not message then break end
    table.insert(out, k)
    table.insert(out, message)
    left = left - 1
  end
  if left == 0 then break end
end
return out
