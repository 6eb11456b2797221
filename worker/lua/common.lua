-- Shared helpers, prepended to every recstop script.
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  return string.format('%.3f', x)
end

local PENDING = {scheduled = true, queued = true, retrying = true}

local function pending(state)
  return state ~= false and state ~= nil and PENDING[state] == true
end

local function expire_all(keys, seconds)
  local ttl = math.max(1, math.ceil(seconds))
  for _, k in ipairs(keys) do redis.call('EXPIRE', k, ttl) end
end

-- Arm the key's watchdog: if nothing settles the stop before then, the scheduler publishes it
-- again. It catches a message lost between Redis and a worker (kombu pops it before recording it
-- as unacked, so a worker killed in between takes it along). Each firing doubles the next wait.
local function watch(schedule, status, member, watchdog_s)
  local n = tonumber(redis.call('HGET', status, 'republished') or '0')
  local at = fmt(now_s() + watchdog_s * 2 ^ math.min(n, 5))
  redis.call('ZADD', schedule, at, member)
  redis.call('HSET', status, 'watch_at', at)
end

-- Add one dead letter and keep the store within its count and age bounds.
local function dlq_add(index_key, entry_prefix, entry_id, fields, now, max_entries, max_age)
  local entry_key = entry_prefix .. entry_id
  redis.call('HSET', entry_key, unpack(fields))
  redis.call('EXPIRE', entry_key, max_age)
  redis.call('ZADD', index_key, now, entry_id)
  local old = redis.call('ZRANGEBYSCORE', index_key, '-inf', '(' .. fmt(now - max_age))
  for _, id in ipairs(old) do redis.call('DEL', entry_prefix .. id) end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', index_key, '-inf', '(' .. fmt(now - max_age)) end
  local extra = redis.call('ZCARD', index_key) - max_entries
  if extra > 0 then
    local oldest = redis.call('ZRANGE', index_key, 0, extra - 1)
    for _, id in ipairs(oldest) do redis.call('DEL', entry_prefix .. id) end
    redis.call('ZREMRANGEBYRANK', index_key, 0, extra - 1)
  end
end
