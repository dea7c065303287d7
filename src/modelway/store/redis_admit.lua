-- RedisCounters.admit: take every window's amount, a lease in every slot set and every
-- budget's amount, or nothing when one of them has no room. Mirrors memory_counters.py.
--
-- Hot-path habits: numbers go on to Redis as the ARGV strings they came in (a Lua number
-- costs a float-to-string conversion per call), strings known to hold numbers become
-- numbers by arithmetic (`s + 0`, about half the cost of `tonumber` in Redis's Lua), few
-- tables are made, and a window's newest bucket and expiry are written only when a new
-- second starts. A slot set keeps a member "\n" scored +inf (no lease is a newline) so
-- that it is not deleted and re-made around every request; leases are counted with
-- ZCOUNT up to, not including, +inf.
--
-- KEYS: the windows, then the slot sets, then the budgets.
-- ARGV: what stays the same from one request of a caller to the next, first (the caller
--       keeps it packed): #windows, #slot sets, #budgets, slot set ttl (ms); limit,
--       seconds, key ttl (s) per window; limit per slot set; limit per budget. Then what
--       changes: now, its second, lease, lease expiry; amount per window; amount and
--       ttl (s) per budget.
-- Returns: allowed, index of the refusing key (0: none), its retry datum (window: the
--          bucket whose leaving makes room, -1: never; budget: pttl), then total and
--          newest bucket per window, then spend per budget.
local nw, ns, nb = ARGV[1] + 0, ARGV[2] + 0, ARGV[3] + 0
local cs = 5 + 3 * nw -- first slot set limit (window constants start at 5)
local cb = cs + ns -- first budget limit
local v = cb + nb -- now
local va, vb = v + 4, v + 4 + nw -- first window amount, first budget amount
local now, second_field, lease = ARGV[v], ARGV[v + 1], ARGV[v + 2]
local second = second_field + 0
local denied, retry = 0, 0
local out = {0, 0, 0}
-- per window: oldest bucket, whether the hash is new, amount; per budget: value, amount
local memo = {}

-- Drops the buckets at or before cutoff; returns total, oldest bucket, newest, new hash.
local function drop_stale(key, cutoff)
  local meta = redis.call('HMGET', key, 't', 'o', 'n')
  if not meta[2] then return 0, cutoff + 1, -1, true end
  local total, oldest, newest = meta[1] + 0, meta[2] + 0, meta[3] + 0
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
  local a = 2 + 3 * i
  local limit, amount = ARGV[a] + 0, ARGV[va + i - 1] + 0
  local total, oldest, newest, fresh = drop_stale(KEYS[i], second - ARGV[a + 1])
  out[2 + 2 * i], out[3 + 2 * i] = total, newest
  memo[3 * i - 2], memo[3 * i - 1], memo[3 * i] = oldest, fresh, amount
  if denied == 0 and total + amount > limit then
    denied = i
    if amount > limit then
      retry = -1
    else
      retry = first_leaving(KEYS[i], oldest, newest, total + amount - limit)
    end
  end
end

for j = 1, ns do
  if denied == 0 then
    local key, limit = KEYS[nw + j], ARGV[cs + j - 1] + 0
    if redis.call('ZCOUNT', key, '-inf', '(inf') >= limit then
      local held = tonumber(redis.call('ZSCORE', key, lease))
      if not (held and held > tonumber(now)) then
        -- Expired leases (of a crashed holder) only matter when the set looks full.
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        if redis.call('ZCOUNT', key, '-inf', '(inf') >= limit then denied = nw + j end
      end
    end
  end
end

for k = 1, nb do
  local key = KEYS[nw + ns + k]
  local value = redis.call('GET', key)
  local spent, amount = value and value + 0 or 0, ARGV[vb + 2 * k - 2] + 0
  out[3 + 2 * nw + k], memo[3 * nw + 2 * k - 1], memo[3 * nw + 2 * k] = spent, value, amount
  if denied == 0 and spent + amount > ARGV[cb + k - 1] + 0 then
    denied, retry = nw + ns + k, redis.call('PTTL', key)
  end
end

if denied ~= 0 then
  out[2], out[3] = denied, retry
  return out
end

for i = 1, nw do
  local amount = memo[3 * i]
  if amount > 0 then
    local key, oldest, newest, units = KEYS[i], memo[3 * i - 2], out[3 + 2 * i], ARGV[va + i - 1]
    local bucket, field = second, second_field
    if oldest > second then bucket, field = oldest, oldest end -- this caller's clock is behind
    redis.call('HINCRBY', key, field, units)
    redis.call('HINCRBY', key, 't', units)
    if memo[3 * i - 1] then redis.call('HSET', key, 'o', oldest) end
    if bucket > newest then
      redis.call('HSET', key, 'n', field)
      redis.call('EXPIRE', key, ARGV[4 + 3 * i])
      out[3 + 2 * i] = bucket
    end
    out[2 + 2 * i] = out[2 + 2 * i] + amount
  end
end
for j = 1, ns do
  redis.call('ZADD', KEYS[nw + j], ARGV[v + 3], lease, 'inf', '\n')
  redis.call('PEXPIRE', KEYS[nw + j], ARGV[4])
end
for k = 1, nb do
  local key, b, amount = KEYS[nw + ns + k], vb + 2 * k - 2, memo[3 * nw + 2 * k]
  if not memo[3 * nw + 2 * k - 1] then
    redis.call('SET', key, ARGV[b], 'EX', ARGV[b + 1])
  elseif amount ~= 0 then
    redis.call('INCRBY', key, ARGV[b])
  end
  out[3 + 2 * nw + k] = out[3 + 2 * nw + k] + amount
end
out[1] = 1
return out
