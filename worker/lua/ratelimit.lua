-- Per-account rate limiter (GCRA / virtual scheduling), shared by every worker through Redis.
-- KEYS: the account's rate hash: tat (theoretical arrival time), rate (effective rate right after
--       the last penalty), penalized_at, blocked_until; times are seconds of Redis server time.
-- ARGV: op (acquire | penalize | rate), rate_rps, floor_fraction, recover_rps_per_s,
--       max_reserve_s, urgent (0|1), decrease_factor, cooldown_s, retry_after_s ('' = none),
--       retry_after_cap_s, idle_ttl_s
-- Returns {wait_s, reserved (0|1), effective_rate_rps}; numbers as strings (Lua numbers would be
-- truncated to integers in the reply).
local key, op = KEYS[1], ARGV[1]
local conf, floor_frac, recover = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
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
  local ttl = math.max(tonumber(ARGV[11]), math.max(tat, blocked) - now + 60)
  redis.call('EXPIRE', key, math.ceil(ttl))
end

local rate = effective()

if op == 'acquire' then
  local max_reserve, urgent = tonumber(ARGV[5]), ARGV[6] == '1'
  local start
  if urgent then
    -- Never queued behind routine reservations: at most one request above the instantaneous rate.
    start = math.max(now, blocked)
  else
    start = math.max(now, tat, blocked)
  end
  local wait = start - now
  if wait > max_reserve then return {f6(wait), 0, f6(rate)} end
  -- Routine: the slot at start. Urgent: still pushes tat one interval, so the average holds.
  tat = math.max(tat, start) + 1 / rate
  redis.call('HSET', key, 'tat', f6(tat))
  keep()
  return {f6(wait), 1, f6(rate)}
elseif op == 'penalize' then
  -- AIMD: one decrease per cooldown, however many in-flight requests got their 429 at once.
  if penalized_at == nil or now - penalized_at >= tonumber(ARGV[8]) then
    rate = math.max(floor_frac * conf, tonumber(ARGV[7]) * rate)
    redis.call('HSET', key, 'rate', f6(rate), 'penalized_at', f6(now))
  end
  local retry_after = tonumber(ARGV[9])
  if retry_after ~= nil then
    blocked = math.max(blocked, now + math.min(math.max(retry_after, 0), tonumber(ARGV[10])))
    redis.call('HSET', key, 'blocked_until', f6(blocked))
  end
  keep()
  return {'0', 0, f6(rate)}
end
return {'0', 0, f6(rate)}
