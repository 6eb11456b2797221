-- claim: lease the schedule entries that are due, so that one scheduler publishes each.
-- KEYS[1]  schedule
-- ARGV[1]  JSON {lease_s, limit}
-- Returns JSON {due: [{member, score, lease}], wait_s}: the leased entries with the score they
-- were due at and the lease score they now carry, and seconds until the next entry is due (absent
-- when the schedule is empty). A scheduler that dies holding a lease leaves it to expire: the
-- entry is due again lease_s later.
local schedule = KEYS[1]
local A = cjson.decode(ARGV[1])
local now = now_s()
local lease = fmt(now + A.lease_s)
local found = redis.call('ZRANGE', schedule, '-inf', fmt(now), 'BYSCORE', 'LIMIT', 0, A.limit, 'WITHSCORES')
local due = {}
for i = 1, #found, 2 do
  redis.call('ZADD', schedule, lease, found[i])
  table.insert(due, {member = found[i], score = fmt(tonumber(found[i + 1])), lease = lease})
end
local first = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
local out = {due = due}
if #due == 0 then out.due = nil end
if #first == 2 then out.wait_s = math.max(0, tonumber(first[2]) - now) end
return cjson.encode(out)
