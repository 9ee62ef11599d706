"""The Lua scripts of the Redis state backend: the memory backend's rules, atomically.

Keys per deployment share one hash tag, so a cluster keeps them in one slot:
    {<prefix>:<deployment>}:br   breaker hash: open, until, reason, failures, wstart, probe
    {<prefix>:<deployment>}:rq   rpm buckets: second -> requests
    {<prefix>:<deployment>}:tk   tpm buckets: second -> tokens
and a name's calls at once (`hold`; a client key's are named "client-key:<name>"):
    {<prefix>:<name>}:sl         sorted set: slot token -> when its lease ends
Times are wall-clock seconds passed in by the caller (ARGV[1]); floats travel
as strings because Redis turns Lua numbers into integers.

Sent twice, counted once. The backend lets redis-py send a call again once
after a connection error (see `redis.py`), and the error may come after Redis
ran the call but before its answer arrived. So every script that counts
(ADMIT, RELEASE, SETTLE, RECORD_FAILURE) gets one more key, unique to the call,
    {<prefix>:<deployment>}:op:<call id>   the call's answer, for a few seconds
which it checks first: found, the call ran already, and the stored answer is
the answer. HOLD needs no such key: its slot token is already unique to the
call, and LET_GO, RECORD_SUCCESS and VIEW do the same thing twice as once.

Imports: nothing.
"""

from __future__ import annotations

_VIEW = """
local function view(key, now)
  local b = redis.call('HMGET', key, 'open', 'until', 'reason', 'failures', 'probe')
  if b[1] ~= '1' then return {'closed', '0', '', tonumber(b[4] or '0'), 0} end
  local untl = tonumber(b[2])
  if now < untl then return {'open', tostring(untl - now), b[3] or '', 0, 0} end
  local probing = 0
  if tonumber(b[5] or '0') > now then probing = 1 end
  return {'half_open', '0', b[3] or '', 0, probing}
end
"""

# The call's key is the last of KEYS; ARGV[#ARGV] is how long its answer is kept.
_ONCE = """
local once = KEYS[#KEYS]
local done = redis.call('GET', once)
if done then return cjson.decode(done) end
local function remember(answer)
  redis.call('SET', once, cjson.encode(answer), 'EX', ARGV[#ARGV])
  return answer
end
"""

VIEW = _VIEW + """
return view(KEYS[1], tonumber(ARGV[1]))
"""

# Only an admission that counted or took the probe is remembered: a refusal,
# or an admission with no limits, changed nothing, so running it again is as good.
ADMIT = _ONCE + """
local now = tonumber(ARGV[1])
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, ttl, win = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local b = redis.call('HMGET', KEYS[1], 'open', 'until', 'probe', 'reason')
local probe = 0
if b[1] == '1' then
  local untl = tonumber(b[2])
  if now < untl then return {0, 'cooldown', tostring(untl - now), b[4] or '', -1, 0} end
  local pu = tonumber(b[3] or '0')
  if pu > now then return {0, 'half-open', tostring(pu - now), b[4] or '', -1, 0} end
  probe = 1
end
local bucket = -1
if rpm >= 0 or tpm >= 0 then
  local sec = math.floor(now)
  local keep = sec - win + 1
  local oldest = nil
  local function sum(key)
    local all = redis.call('HGETALL', key)
    local total = 0
    for i = 1, #all, 2 do
      local s = tonumber(all[i])
      if s < keep then
        redis.call('HDEL', key, all[i])
      else
        total = total + tonumber(all[i + 1])
        if oldest == nil or s < oldest then oldest = s end
      end
    end
    return total
  end
  local used_r, used_t = sum(KEYS[2]), sum(KEYS[3])
  local wait = 1.0
  if oldest ~= nil then wait = math.max(0.001, oldest + win - now) end
  if rpm >= 0 and used_r + 1 > rpm then return {0, 'rpm', tostring(wait), '', -1, 0} end
  if tpm >= 0 and used_t > 0 and used_t + tokens > tpm then
    return {0, 'tpm', tostring(wait), '', -1, 0}
  end
  redis.call('HINCRBY', KEYS[2], sec, 1)
  redis.call('HINCRBY', KEYS[3], sec, tokens)
  redis.call('EXPIRE', KEYS[2], win * 2)
  redis.call('EXPIRE', KEYS[3], win * 2)
  bucket = sec
end
if probe == 1 then redis.call('HSET', KEYS[1], 'probe', tostring(now + ttl)) end
if bucket == -1 and probe == 0 then return {1, '', '0', '', -1, 0} end
return remember({1, '', '0', '', bucket, probe})
"""

RELEASE = _ONCE + """
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'probe', '0') end
local bucket = ARGV[2]
if bucket ~= '-1' then
  if redis.call('HEXISTS', KEYS[2], bucket) == 1 then redis.call('HINCRBY', KEYS[2], bucket, -1) end
  -- Not -tokens: Lua writes minus zero "-0", which HINCRBY refuses as no integer.
  local tokens = tonumber(ARGV[3])
  if tokens ~= 0 and redis.call('HEXISTS', KEYS[3], bucket) == 1 then
    redis.call('HINCRBY', KEYS[3], bucket, 0 - tokens)
  end
end
return remember(1)
"""

SETTLE = _ONCE + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[2]))
end
return remember(1)
"""

RECORD_FAILURE = _VIEW + _ONCE + """
local now, reason = tonumber(ARGV[1]), ARGV[2]
local cooldown, allowed = tonumber(ARGV[3]), tonumber(ARGV[4])
local window, immediate, probe = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'
local key = KEYS[1]
local function open_for(d)
  redis.call('HSET', key, 'open', '1', 'until', tostring(now + d), 'reason', reason,
             'failures', '0', 'probe', '0')
end
local b = redis.call('HMGET', key, 'open', 'until', 'failures', 'wstart')
if b[1] == '1' then
  local untl = tonumber(b[2])
  if now < untl then
    if immediate > 0 and now + immediate > untl then
      redis.call('HSET', key, 'until', tostring(now + immediate))
    end
  elseif probe then
    open_for(math.max(cooldown, immediate))
  end
else
  local f, ws = tonumber(b[3] or '0'), tonumber(b[4] or '0')
  if now - ws > window then f, ws = 0, now end
  f = f + 1
  if f > allowed then
    open_for(math.max(cooldown, immediate))
  elseif immediate > 0 then
    open_for(immediate)
  else
    redis.call('HSET', key, 'open', '0', 'failures', tostring(f), 'wstart', tostring(ws))
  end
end
redis.call('EXPIRE', key, 172800)
return remember(view(key, now))
"""

RECORD_SUCCESS = """
local b = redis.call('HMGET', KEYS[1], 'open', 'until')
if b[1] == '1' and tonumber(ARGV[1]) >= tonumber(b[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# ARGV: now, cap, lease (seconds), token. Leases that have ended are let go
# first: their holder died without giving them back. A token already there is
# this very call, sent again after its answer was lost: it has its slot (the
# full set would otherwise refuse it, and the slot stay taken by nobody).
HOLD = """
local now, cap, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) + 1)
return 1
"""

# ARGV: now, lease (seconds), tokens. Renews the leases of the slots a live
# process still holds. XX: a slot no longer there stays gone, since it was let
# go, or its lease ended and a HOLD counted it as free (and may have given it
# to another call); a lease that ended with nobody asking is simply extended.
RENEW = """
local ends = tonumber(ARGV[1]) + tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ends, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""

LET_GO = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
