"""The ledger's Lua scripts: every write is one script, so a record, its indexes, its counters and
its event never disagree. Key layout: geoqueue/ledger_keys.py."""
from __future__ import annotations

from geoqueue.job_record import DEFAULT_APP
from geoqueue.ledger_keys import ENDED_STREAM_LENGTH, JOB_KEY_SUFFIXES


def _lua_table(texts: tuple[str, ...]) -> str:
    """A Lua list of fixed strings (no quotes or backslashes in them)."""
    assert not any(set(text) & {"'", "\\"} for text in texts)
    return "{" + ", ".join(f"'{text}'" for text in texts) + "}"


# Shared by every script: the index keys and the event a change publishes. The event carries the
# record's summary (no params, no result): what a waiting client or a progress bar needs.
_LUA_COMMON = """
local TERMINAL = {succeeded=true, failed=true, canceled=true}
local JOB_KEY_SUFFIXES = """ + _lua_table(JOB_KEY_SUFFIXES) + """
local DEFAULT_APP = '""" + DEFAULT_APP + """'
-- A job's app, from its stored id (geoqueue/job_record.py): what comes before its one '.', if any.
local function app_of(id)
  return string.match(id, '^([^.]+)%.') or DEFAULT_APP
end
local function index(app, vendor, state)
  if app == DEFAULT_APP then return 'gq:jobs:vendor:' .. vendor .. ':state:' .. state end
  return 'gq:jobs:app:' .. app .. ':vendor:' .. vendor .. ':state:' .. state
end
local function publish(key, id)
  local f = redis.call('HMGET', key, 'name', 'vendor', 'state', 'phase', 'done', 'total', 'credits', 'updated', 'error')
  local event = {id=id, name=f[1] or '', vendor=f[2] or '', state=f[3] or '', phase=f[4] or '',
                 done=tonumber(f[5]) or 0, total=tonumber(f[6]) or 0, credits=tonumber(f[7]) or 0,
                 updated=tonumber(f[8]) or 0}
  if f[9] and f[9] ~= 'null' and f[9] ~= '' then event['error'] = cjson.decode(f[9]) end
  redis.call('PUBLISH', 'gq:events:' .. id, cjson.encode(event))
end
local function forget(member)
  -- member is "<vendor>/<state>/<id>" of a finished record whose time is up
  local vendor, state, id = string.match(member, '^([^/]*)/([^/]*)/(.*)$')
  redis.call('ZREM', index(app_of(id), vendor, state), id)
  redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. state, -1)
  for _, suffix in ipairs(JOB_KEY_SUFFIXES) do
    redis.call('DEL', 'gq:job:' .. id .. suffix)
  end
  redis.call('ZREM', 'gq:jobs:expiring', member)
end
local function expire_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', 'gq:jobs:expiring', '-inf', now, 'LIMIT', 0, limit)
  for _, member in ipairs(due) do forget(member) end
  return #due
end
"""

# A finished job stays finished: a late or redelivered task must not flip it back.
# KEYS[1] record; ARGV: state, force, ttl, now, id, publish ('1': the event now; '0': the caller
# announces it with ANNOUNCE_SCRIPT once a replica holds the change), field, value, ...
TRANSITION_SCRIPT = _LUA_COMMON + """
local old = redis.call('HGET', KEYS[1], 'state')
if not old then return -1 end
local new, now, id = ARGV[1], tonumber(ARGV[4]), ARGV[5]
if TERMINAL[old] and ARGV[2] ~= '1' then return 0 end
local vendor = redis.call('HGET', KEYS[1], 'vendor') or ''
redis.call('HSET', KEYS[1], 'state', new, unpack(ARGV, 7))
if old ~= new then
  local created = redis.call('HGET', KEYS[1], 'created') or now
  redis.call('ZREM', index(app_of(id), vendor, old), id)
  redis.call('ZADD', index(app_of(id), vendor, new), created, id)
  redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. old, -1)
  redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. new, 1)
  if TERMINAL[old] then
    redis.call('ZREM', 'gq:jobs:expiring', vendor .. '/' .. old .. '/' .. id)
    redis.call('PERSIST', KEYS[1])
  end
  if TERMINAL[new] then
    for _, suffix in ipairs(JOB_KEY_SUFFIXES) do
      redis.call('EXPIRE', KEYS[1] .. suffix, tonumber(ARGV[3]))
    end
    redis.call('ZADD', 'gq:jobs:expiring', now + tonumber(ARGV[3]), vendor .. '/' .. new .. '/' .. id)
    redis.call('XADD', 'gq:ended', 'MAXLEN', '~', '""" + str(ENDED_STREAM_LENGTH) + """', '*', 'id', id, 'state', new)
    expire_due(now, 10)
  end
end
if ARGV[6] == '1' then publish(KEYS[1], id) end
return 1
"""

# The job's event, told after its change (KEYS[1] record; ARGV[1] id).
ANNOUNCE_SCRIPT = _LUA_COMMON + """
publish(KEYS[1], ARGV[1])
"""

# A record is created once; submitting its id again is the same job only with the same name and params.
# KEYS[1] record; ARGV: id, now, name, params, vendor, state, field, value, ...
CREATE_SCRIPT = _LUA_COMMON + """
local name = redis.call('HGET', KEYS[1], 'name')
if name then
  if name == ARGV[3] and redis.call('HGET', KEYS[1], 'params') == ARGV[4] then return 0 end
  return -1
end
local id, now, vendor, state = ARGV[1], ARGV[2], ARGV[5], ARGV[6]
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
local app = app_of(id)
redis.call('ZADD', index(app, vendor, state), now, id)
redis.call('SADD', 'gq:jobs:vendors', vendor)
if app ~= DEFAULT_APP then redis.call('SADD', 'gq:jobs:apps', app) end
redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. state, 1)
publish(KEYS[1], id)
return 1
"""

# Progress, credits and item outcomes change a running job: write, then tell whoever waits.
# KEYS[1] record; ARGV: id, field, value, ...
UPDATE_SCRIPT = _LUA_COMMON + """
if not redis.call('HGET', KEYS[1], 'state') then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
publish(KEYS[1], ARGV[1])
return 1
"""
ADD_CREDITS_SCRIPT = _LUA_COMMON + """
redis.call('HINCRBY', KEYS[1], 'credits', ARGV[2])
publish(KEYS[1], ARGV[1])
"""
# KEYS[1] record; ARGV: id, item, outcome, now. 1 when this call recorded the item first.
RECORD_ITEM_SCRIPT = _LUA_COMMON + """
local added = redis.call('SADD', KEYS[1] .. ':finished', ARGV[2])
redis.call('HSET', KEYS[1] .. ':items', ARGV[2], ARGV[3])
if added == 1 then
  redis.call('HINCRBY', KEYS[1], 'done', 1)
  redis.call('HSET', KEYS[1], 'updated', ARGV[4])
  publish(KEYS[1], ARGV[1])
end
return added
"""
EXPIRE_DUE_SCRIPT = _LUA_COMMON + """
return expire_due(tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
