-- RedisCounters.settle: add each delta to the window bucket the request was admitted in
-- and to each budget (never below zero), and release the lease. Mirrors memory_counters.py.
--
-- KEYS: the windows, then the budgets, then the slot sets.
-- ARGV: #windows, #budgets, #slot sets, lease, bucket; then delta, key ttl (s) per
--       window; delta, ttl (s) per budget.
-- Numbers: as in redis_admit.lua (ARGV strings passed on, `s + 0` over `tonumber`).
local nw, nb, ns = ARGV[1] + 0, ARGV[2] + 0, ARGV[3] + 0
local lease, field = ARGV[4], ARGV[5]
local bucket = field + 0
for i = 1, nw do
  local key, delta, ttl = KEYS[i], ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local meta = redis.call('HMGET', key, 'o', 'n', field)
  if not meta[1] then
    if delta + 0 > 0 then
      redis.call('HSET', key, field, delta, 't', delta, 'o', field, 'n', field)
      redis.call('EXPIRE', key, ttl)
    end
  elseif bucket >= meta[1] + 0 then -- else the bucket has left the window already
    local old = meta[3] and meta[3] + 0 or 0
    if old + delta > 0 then
      redis.call('HINCRBY', key, field, delta)
      redis.call('HINCRBY', key, 't', delta)
      if bucket > (meta[2] and meta[2] + 0 or -1) then
        redis.call('HSET', key, 'n', field)
        redis.call('EXPIRE', key, ttl)
      end
    elseif old > 0 then
      redis.call('HDEL', key, field)
      redis.call('HINCRBY', key, 't', -old)
    end
  end
end
local a = 6 + 2 * nw
for k = 1, nb do
  local key, delta = KEYS[nw + k], ARGV[a + 2 * (k - 1)]
  if redis.call('EXISTS', key) == 1 then
    if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  elseif delta + 0 > 0 then
    redis.call('SET', key, delta, 'EX', ARGV[a + 2 * k - 1])
  end
end
for j = 1, ns do redis.call('ZREM', KEYS[nw + nb + j], lease) end
return 0
