"""The Lua scripts a `budgets.BudgetGate` runs in Redis, each one atomic over
all the budgets of a call: reserve, settle, seed from the ledger's record, and
add the spend of a call counted in memory while Redis was away.

Imports: nothing.
"""

# KEYS: one hash per budget period, then (when the ledger's record is to be
# checked) one seeding mark per budget period. ARGV: amount, ticket id, the
# number of hashes, one limit per hash, one ttl per hash (each lives as long as
# its own period), then (while a record this gate is to
# add is not in yet) its claim: a hash it creates is marked with it, so that
# the record is added to it when it lands (`SEED`). A missing mark (Redis lost
# its data, or never had this period) returns -2: seed the count first (`SEED`). Refuse
# (return the 1-based index of the spent budget, its spent and its reserved) unless
# every budget has room;
# otherwise reserve the amount on all of them, under the ticket's id too
# ("r:<id>"), and return 0 followed by each hash's spent before it (an outage
# begins this process' memory counts from no less: `budget_redis_counts`; the
# values are read for the check anyway). A ticket given up on before this
# ran (its call timed out in the client) left a mark ("x:<id>"): a late run
# then reserves nothing, since no ticket would ever give the amount back.
RESERVE = """
local amount = tonumber(ARGV[1])
local id = ARGV[2]
local n = tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'x:' .. id) == 1 then
  return -1
end
if redis.call('HEXISTS', KEYS[1], 'r:' .. id) == 1 then
  return 0  -- a resend of a reserve that ran (its reply was lost): reserved once
end
for i = n + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    return -2
  end
end
local counted = {0}
for i = 1, n do
  local spent = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[i], 'reserved') or '0')
  if spent + reserved >= tonumber(ARGV[i + 3]) then
    return {i, spent, reserved}
  end
  counted[i + 1] = spent
end
local claim = ARGV[2 * n + 4]
for i = 1, n do
  local key = KEYS[i]
  if claim and redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'claim', claim)
  end
  redis.call('HINCRBY', key, 'reserved', amount)
  redis.call('HSET', key, 'r:' .. id, amount)
  redis.call('EXPIRE', key, tonumber(ARGV[n + i + 3]))
end
return counted
"""

# KEYS: one budget period's seeding mark, then its hashes (one per end user for
# "*"). ARGV: ttl, the seeding gate's claim, the record's end (Unix seconds: it
# holds the calls that ended before), then the ledger's record for each hash. A
# hash takes the record once ("seeded": the record's end), whichever replica
# comes first, if it counts nothing (Redis does not hold it, or holds only the
# give-up marks of settles that came after Redis lost its data: a failed call's
# settle re-creates the hash), or if this gate created it with its claim after
# the record's end (calls went on while the read was late): a hash that counts
# something otherwise already counts the period (one written before seeding
# marks existed, or by a settle since), and adding the record to it would count
# that spend twice ("seeded": 0, it holds no record). A hash another gate
# claimed is left to that gate's record. So two replicas seeding at once, or a
# mark evicted alone, count nothing twice. The mark keeps the first seeding's
# end: a hash the record did not name (an end user with no spend recorded) has
# no call of the period that ended before it. `SPEND` reads both ends.
SEED = """
local ttl = tonumber(ARGV[1])
for i = 2, #KEYS do
  local key = KEYS[i]
  local held = redis.call('HGET', key, 'claim')
  if not held or held == ARGV[2] then
    local fresh = redis.call('HEXISTS', key, 'spent') == 0
      and redis.call('HEXISTS', key, 'reserved') == 0
    if redis.call('HEXISTS', key, 'seeded') == 0 then
      if fresh or held then
        redis.call('HINCRBY', key, 'spent', tonumber(ARGV[i + 2]))
        redis.call('HSET', key, 'seeded', ARGV[3])
      else
        redis.call('HSET', key, 'seeded', 0)
      end
    end
    if held then
      redis.call('HDEL', key, 'claim')
    end
  end
  redis.call('EXPIRE', key, ttl)
end
if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ttl) then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return 0
"""

# KEYS: the hashes of a call counted in memory while Redis was away, then (with
# a ledger) one seeding mark per hash. ARGV: ticket id, its cost, when it ended
# (Unix seconds), one ttl per hash. Adds the cost to each hash once, under a
# mark of the id ("m:<id>"), so that a settle sent again counts once; but not
# where the ledger's record the hash was seeded with (`SEED`: the hash's
# "seeded", else the mark's) ended after the call did: that record holds it.
# Each hash on its own: one whose mark is missing (Redis lost its data) is -2
# and takes nothing, for the seeding's record could count the call again; one
# that a gate claimed and whose record is not in yet is -1 (that record's end,
# which says whether it holds the call, is not known yet). Either waits for
# the caller to send it again; the other hashes take the cost now. Returns each
# hash's spent, or its -2 or -1.
SPEND = """
local id = ARGV[1]
local actual = tonumber(ARGV[2])
local ended = tonumber(ARGV[3])
local n = #ARGV - 3
local marked = #KEYS > n
local counted = {}
for i = 1, n do
  local key = KEYS[i]
  local mark = marked and redis.call('GET', KEYS[n + i])
  local seeded = redis.call('HGET', key, 'seeded')
  if marked and not mark then
    counted[i] = -2
  elseif marked and not seeded and redis.call('HEXISTS', key, 'claim') == 1 then
    counted[i] = -1
  else
    if redis.call('HSETNX', key, 'm:' .. id, 1) == 1 then
      local since = marked and (tonumber(seeded) or tonumber(mark))
      if not since or ended >= since then
        redis.call('HINCRBY', key, 'spent', actual)
      end
    end
    redis.call('EXPIRE', key, tonumber(ARGV[i + 3]))
    counted[i] = tonumber(redis.call('HGET', key, 'spent') or '0')
  end
end
return counted
"""

# KEYS: the hashes reserved on. ARGV: ticket id, real cost, one ttl per hash. Gives back what
# the ticket's id holds and counts the cost only then, so a settle sent twice (a
# retry of one whose reply was lost) counts once. Settling a reservation Redis
# never made with 0 (a reserve given up on) leaves the mark `RESERVE` heeds if
# it runs late. Returns each hash's spent where it added the cost, else 0 (the
# caller keeps the largest it heard: `budget_redis_counts`).
SETTLE = """
local id = ARGV[1]
local actual = tonumber(ARGV[2])
local counted = {}
for i, key in ipairs(KEYS) do
  counted[i] = 0
  local held = redis.call('HGET', key, 'r:' .. id)
  if held then
    redis.call('HDEL', key, 'r:' .. id)
    redis.call('HINCRBY', key, 'reserved', -tonumber(held))
    if actual > 0 then
      counted[i] = redis.call('HINCRBY', key, 'spent', actual)
    end
  elseif actual == 0 then
    redis.call('HSET', key, 'x:' .. id, 1)
  end
  redis.call('EXPIRE', key, tonumber(ARGV[i + 2]))
end
return counted
"""
