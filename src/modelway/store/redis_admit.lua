-- RedisCounters.admit: take every window's amount, a lease in every slot set and every
-- budget's amount, or nothing when one of them has no room. Mirrors memory_counters.py.
--
-- Hot-path habits: numbers go on to Redis as the ARGV strings they came in (a Lua number
-- costs a float-to-string conversion per call), few tables are made, and a window's
-- newest bucket and expiry are written only when a new second starts.
--
-- KEYS: the windows, then the slot sets, then the budgets.
-- ARGV: #windows, #slot sets, #budgets, now, its second, lease, lease expiry, slot set
--       ttl (ms); then limit, amount, seconds, key ttl (s) per window; limit per slot
--       set; limit, amount, ttl (s) per budget.
-- Returns: allowed, index of the refusing key (0: none), its retry datum (window: the
--          bucket whose leaving makes room, -1: never; budget: pttl), then total and
--          newest bucket per window, then spend per budget.
local nw, ns, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, second_field, lease = ARGV[4], ARGV[5], ARGV[6]
local second = tonumber(second_field)
local denied, retry = 0, 0
local out = {0, 0, 0}
local memo = {} -- per window: oldest bucket, whether the hash is new; per budget: its value

-- Drops the buckets at or before cutoff; returns total, oldest bucket, newest, new hash.
local function drop_stale(key, cutoff)
  local meta = redis.call('HMGET', key, 't', 'o', 'n')
  local oldest = tonumber(meta[2])
  if oldest == nil then return 0, cutoff + 1, -1, true end
  local total, newest = tonumber(meta[1]), tonumber(meta[3])
  if oldest > cutoff then return total, oldest, newest, false end
  if cutoff - oldest + 1 <= redis.call('HLEN', key) then
    for b = oldest, cutoff do
      local units = redis.call('HGET', key, b)
      if units then
        total = total - tonumber(units)
        redis.call('HDEL', key, b)
      end
    end
  else
    local fields = redis.call('HGETALL', key)
    for i = 1, #fields, 2 do
      local b = tonumber(fields[i])
      if b and b <= cutoff then
        total = total - tonumber(fields[i + 1])
        redis.call('HDEL', key, fields[i])
      end
    end
  end
  redis.call('HSET', key, 't', total, 'o', cutoff + 1)
  return total, cutoff + 1, newest, false
end

-- The bucket whose leaving (with all older ones) frees `need` units.
local function first_leaving(key, oldest, newest, need)
  local freed = 0
  if newest - oldest + 1 <= redis.call('HLEN', key) then
    for b = oldest, newest do
      freed = freed + (tonumber(redis.call('HGET', key, b)) or 0)
      if freed >= need then return b end
    end
    return newest
  end
  local fields, buckets = redis.call('HGETALL', key), {}
  for i = 1, #fields, 2 do
    local b = tonumber(fields[i])
    if b then buckets[#buckets + 1] = {b, tonumber(fields[i + 1])} end
  end
  table.sort(buckets, function(x, y) return x[1] < y[1] end)
  for _, bucket in ipairs(buckets) do
    freed = freed + bucket[2]
    if freed >= need then return bucket[1] end
  end
  return newest
end

for i = 1, nw do
  local a = 5 + 4 * i
  local limit, amount = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local total, oldest, newest, fresh = drop_stale(KEYS[i], second - tonumber(ARGV[a + 2]))
  out[2 + 2 * i], out[3 + 2 * i] = total, newest
  memo[2 * i - 1], memo[2 * i] = oldest, fresh
  if denied == 0 and total + amount > limit then
    denied = i
    if amount > limit then
      retry = -1
    else
      retry = first_leaving(KEYS[i], oldest, newest, total + amount - limit)
    end
  end
end

local a = 9 + 4 * nw
for j = 1, ns do
  if denied == 0 then
    local key, limit = KEYS[nw + j], tonumber(ARGV[a + j - 1])
    if redis.call('ZCARD', key) >= limit then
      local held = tonumber(redis.call('ZSCORE', key, lease))
      if not (held and held > tonumber(now)) then
        -- Expired leases (of a crashed holder) only matter when the set looks full.
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        if redis.call('ZCARD', key) >= limit then denied = nw + j end
      end
    end
  end
end

a = a + ns
for k = 1, nb do
  local key, b = KEYS[nw + ns + k], a + 3 * (k - 1)
  local value = redis.call('GET', key)
  local spent = tonumber(value) or 0
  out[3 + 2 * nw + k], memo[2 * nw + k] = spent, value
  if denied == 0 and spent + tonumber(ARGV[b + 1]) > tonumber(ARGV[b]) then
    denied, retry = nw + ns + k, redis.call('PTTL', key)
  end
end

if denied ~= 0 then
  out[2], out[3] = denied, retry
  return out
end

for i = 1, nw do
  local amount = ARGV[6 + 4 * i]
  if tonumber(amount) > 0 then
    local key, oldest, newest = KEYS[i], memo[2 * i - 1], out[3 + 2 * i]
    local bucket, field = second, second_field
    if oldest > second then bucket, field = oldest, oldest end -- this caller's clock is behind
    redis.call('HINCRBY', key, field, amount)
    redis.call('HINCRBY', key, 't', amount)
    if memo[2 * i] then redis.call('HSET', key, 'o', oldest) end
    if bucket > newest then
      redis.call('HSET', key, 'n', field)
      redis.call('EXPIRE', key, ARGV[8 + 4 * i])
      out[3 + 2 * i] = bucket
    end
    out[2 + 2 * i] = out[2 + 2 * i] + tonumber(amount)
  end
end
for j = 1, ns do
  redis.call('ZADD', KEYS[nw + j], ARGV[7], lease)
  redis.call('PEXPIRE', KEYS[nw + j], ARGV[8])
end
for k = 1, nb do
  local key, b = KEYS[nw + ns + k], a + 3 * (k - 1)
  if not memo[2 * nw + k] then
    redis.call('SET', key, ARGV[b + 1], 'EX', ARGV[b + 2])
  elseif tonumber(ARGV[b + 1]) ~= 0 then
    redis.call('INCRBY', key, ARGV[b + 1])
  end
  out[3 + 2 * nw + k] = out[3 + 2 * nw + k] + tonumber(ARGV[b + 1])
end
out[1] = 1
return out
