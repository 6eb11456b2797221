-- Per-account rate limiter (GCRA / virtual scheduling), shared by every worker through Redis.
-- KEYS: the account's rate hash: tat (theoretical arrival time), rate (effective rate right after
--       the last penalty), penalized_at, blocked_until; times are seconds of Redis server time.
-- ARGV[1]: JSON {op (acquire | penalize | rate), rate_rps, floor_fraction, recover_rps_per_s,
--          max_reserve_s, urgent, decrease_factor, cooldown_s, retry_after_s (absent: none),
--          retry_after_cap_s, idle_ttl_s}
-- Returns JSON {wait_s, reserved, rate_rps}.
local key = KEYS[1]
local A = cjson.decode(ARGV[1])
local op, conf, floor_frac, recover = A.op, A.rate_rps, A.floor_fraction, A.recover_rps_per_s
local now = now_s()
local state = redis.call('HMGET', key, 'tat', 'rate', 'penalized_at', 'blocked_until')
local tat = tonumber(state[1]) or 0
local penalized_at = tonumber(state[3])
local blocked = tonumber(state[4]) or 0

local function f6(x)
  return string.format('%.6f', x)
end

-- min(configured, rate after the last penalty + linear recovery since), never below the floor.
local function effective()
  local base = tonumber(state[2])
  if base == nil or penalized_at == nil then return conf end
  local recovered = base + recover * math.max(0, now - penalized_at)
  return math.max(math.min(conf, recovered), floor_frac * conf)
end

-- Idle accounts vanish after idle_ttl_s, but never while a reservation or a block lies ahead.
local function keep()
  local ttl = math.max(A.idle_ttl_s, math.max(tat, blocked) - now + 60)
  redis.call('EXPIRE', key, math.ceil(ttl))
end

local rate = effective()

if op == 'acquire' then
  local max_reserve, urgent = A.max_reserve_s, A.urgent == true
  local start
  if urgent then
    -- Never queued behind routine reservations: at most one request above the instantaneous rate.
    start = math.max(now, blocked)
  else
    start = math.max(now, tat, blocked)
  end
  local wait = start - now
  if wait > max_reserve then return cjson.encode({wait_s = wait, reserved = false, rate_rps = rate}) end
  -- Routine: the slot at start. Urgent: still pushes tat one interval, so the average holds.
  tat = math.max(tat, start) + 1 / rate
  redis.call('HSET', key, 'tat', f6(tat))
  keep()
  return cjson.encode({wait_s = wait, reserved = true, rate_rps = rate})
elseif op == 'penalize' then
  -- AIMD: one decrease per cooldown, however many in-flight requests got their 429 at once.
  if penalized_at == nil or now - penalized_at >= A.cooldown_s then
    rate = math.max(floor_frac * conf, A.decrease_factor * rate)
    redis.call('HSET', key, 'rate', f6(rate), 'penalized_at', f6(now))
  end
  local retry_after = A.retry_after_s
  if retry_after ~= nil then
    blocked = math.max(blocked, now + math.min(math.max(retry_after, 0), A.retry_after_cap_s))
    redis.call('HSET', key, 'blocked_until', f6(blocked))
  end
  keep()
  return cjson.encode({wait_s = 0, reserved = false, rate_rps = rate})
end
return cjson.encode({wait_s = 0, reserved = false, rate_rps = rate})
