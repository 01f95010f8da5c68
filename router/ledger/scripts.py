"""The two Lua scripts that write the ledger, and the KEYS/ARGV they are called with.

Each script runs atomically in Redis, so a record and every aggregate it touches change together,
and a verdict moves the graded/correct counters of exactly the aggregates its record counted in.
The sync and async clients send the very same calls.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from router.ledger.config import LedgerConfig
from router.ledger.counts import MICRO, NANO, score_units, to_units
from router.ledger.entry import NO_APP, AppCap, LedgerEntry, ledger_tag, source_rank
from router.ledger.keys import Dimension, LedgerKeys, utc_day

logger = logging.getLogger(__name__)

DAY_S = 86_400

# KEYS: stream, request hash, dims:tier, dims:policy, dims:app, then n_all all-time aggregates
# and n_day daily aggregates. ARGV: record JSON, stream maxlen, request TTL (s), daily EXPIREAT,
# n_all, n_day, tier, policy, app, cost (nano-USD), UTC day, key tag, then counter name/increment pairs.
# Returns 1 when written, 0 when the request id was already recorded (a retried flush).
# The request hash keeps only what feedback needs to find the same aggregates again, and the key
# tag that made the request, whose verdict alone the proxy accepts (small: there is one per
# request for record_ttl_days).
RECORD_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'r', ARGV[1])
local n_all = tonumber(ARGV[5])
local last = 5 + n_all + tonumber(ARGV[6])
for i = 6, last do
  local key = KEYS[i]
  for j = 13, #ARGV, 2 do
    redis.call('HINCRBY', key, ARGV[j], ARGV[j + 1])
  end
  if i > 5 + n_all then redis.call('EXPIREAT', key, ARGV[4]) end
end
redis.call('HSET', KEYS[2], 't', ARGV[7], 'p', ARGV[8], 'a', ARGV[9], 'c', ARGV[10], 'd', ARGV[11])
if ARGV[12] ~= '' then redis.call('HSET', KEYS[2], 'k', ARGV[12]) end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[7])
redis.call('SADD', KEYS[4], ARGV[8])
redis.call('SADD', KEYS[5], ARGV[9])
return 1
"""

# KEYS: the request hash, the stream. ARGV: score in millionths, key prefix, request id, stream maxlen,
# verdict source, the source's rank (0 strongest, see VERDICT_SOURCES), and the key tag that must have
# made the request ('' or absent: any; a request of another key is answered as unknown).
# Returns 0 for an unknown (or expired) request, 1 for a first verdict, 2 for a replaced one, 3 for
# a verdict kept in the stream only, because the request already has one from a stronger source
# (a judge never overrides the app's own feedback; a request without a stored rank was graded
# before sources existed and counts as feedback).
# A replaced verdict moves `correct_e6` by the difference only; graded and graded cost were
# counted with the first. Aggregates that expired meanwhile are left alone (never recreated
# without their TTL). The verdict is also appended to the stream, so that reading the stream
# alone gives every record with its latest verdict, however old. The aggregate key names are
# rebuilt here exactly as keys.py builds them (tests/ledger check that they agree). They are not in
# KEYS, so on a Redis Cluster they are reachable only because the prefix's hash tag puts them in the
# request hash's slot (router/redis_client.py refuses a cluster URL with a prefix lacking one).
FEEDBACK_LUA = """
local h = redis.call('HMGET', KEYS[1], 't', 'p', 'a', 'd', 'c', 'v', 'vr', 'k')
if not h[1] then return 0 end
if ARGV[7] and ARGV[7] ~= '' and h[8] ~= ARGV[7] then return 0 end
if h[6] and tonumber(h[7] or '0') < tonumber(ARGV[6]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'v', ARGV[3], 's', ARGV[1], 'src', ARGV[5])
  return 3
end
local new = tonumber(ARGV[1])
local graded, delta, result = 1, new, 1
if h[6] then
  graded, delta, result = 0, new - tonumber(h[6]), 2
end
local p = ARGV[2]
local day = p .. 'agg:day:' .. h[4]
local aggs = {p .. 'agg:all', p .. 'agg:tier:' .. h[1], p .. 'agg:policy:' .. h[2], p .. 'agg:app:' .. h[3],
  day, day .. ':tier:' .. h[1], day .. ':policy:' .. h[2], day .. ':app:' .. h[3]}
for _, key in ipairs(aggs) do
  if redis.call('EXISTS', key) == 1 then
    if graded == 1 then
      redis.call('HINCRBY', key, 'graded', 1)
      redis.call('HINCRBY', key, 'graded_cost_nusd', h[5])
    end
    if delta ~= 0 then redis.call('HINCRBY', key, 'correct_e6', string.format('%d', delta)) end
  end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'vr', ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'v', ARGV[3], 's', ARGV[1], 'src', ARGV[5])
return result
"""

_ENTRY_FIELDS = tuple(LedgerEntry.__dataclass_fields__)
_OPTIONAL_FIELDS = ("key_tag", "app", "prompt", "source", "extra")


@dataclass(frozen=True, slots=True)
class Call:
    """One script invocation: which script, its KEYS and its ARGV."""

    script: str  # "record" or "feedback"
    keys: list[str]
    args: list[str | int]


def entry_json(entry: LedgerEntry, store_prompts: bool) -> str:
    """The entry as compact JSON; the prompt only when prompts are stored."""
    data: dict[str, Any] = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    data["models"] = list(entry.models)
    if not store_prompts:
        data["prompt"] = None
    for name in _OPTIONAL_FIELDS:  # left out when empty: the stream is most of the ledger's memory
        if not data[name]:
            del data[name]
    # default=str: a stray non-JSON value in `extra` must not cost the record.
    return json.dumps(data, separators=(",", ":"), default=str)


def record_call(entry: LedgerEntry, keys: LedgerKeys, config: LedgerConfig, apps: AppCap) -> Call:
    """The record script's call for one entry: the stream entry, its hash and its 8 aggregates.

    The app is the one `apps` admits (OTHER_APP past the cap), in the aggregates and the record alike.
    """
    day = utc_day(entry.timestamp)
    app = apps.admit(ledger_tag(entry.app) or NO_APP)
    if entry.app is not None and app != entry.app:
        entry = dataclasses.replace(entry, app=app)
    values: dict[Dimension, str] = {"tier": entry.tier, "policy": entry.policy_version, "app": app}
    totals = [keys.total()] + [keys.total(dim, value) for dim, value in values.items()]
    daily = [keys.daily(day)] + [keys.daily(day, dim, value) for dim, value in values.items()]
    cost = to_units(entry.cost_usd, NANO)
    counters: list[str | int] = ["requests", 1]
    for name, amount in (
        ("errors", int(entry.status != "ok")),
        ("cost_nusd", cost),
        ("input_tokens", to_units(entry.input_tokens, 1)),
        ("output_tokens", to_units(entry.output_tokens, 1)),
        ("latency_us", to_units(entry.latency_s, MICRO)),
    ):
        if amount:
            counters += [name, amount]
    day_end = (math.floor(entry.timestamp / DAY_S) + 1) * DAY_S
    return Call(
        "record",
        [keys.stream, keys.request(entry.request_id), keys.dims("tier"), keys.dims("policy"), keys.dims("app"),
         *totals, *daily],
        [
            entry_json(entry, config.store_prompts),
            config.stream_maxlen,
            max(1, round(config.record_ttl_days * DAY_S)),
            day_end + round(config.aggregate_ttl_days * DAY_S),
            len(totals),
            len(daily),
            entry.tier,
            entry.policy_version,
            app,
            cost,
            day,
            entry.key_tag or "",
            *counters,
        ],
    )


def try_record_call(entry: LedgerEntry, keys: LedgerKeys, config: LedgerConfig, apps: AppCap) -> Call | None:
    """record_call, or None (logged) for an entry that cannot be encoded: a ledger write must never fail a request."""
    try:
        return record_call(entry, keys, config, apps)
    except (TypeError, ValueError, OverflowError) as error:
        logger.error("ledger: request %r was not recorded: its entry is malformed (%s).", entry.request_id, error)
        return None


def check_score(score: float) -> float:
    """A verdict must be a finite number in [0, 1] (true = 1, false = 0)."""
    if isinstance(score, bool):
        return float(score)
    if not isinstance(score, (int, float)) or not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ConfigError(f"feedback score: must be a number in [0, 1] or true/false (got {score!r}).")
    return float(score)


def feedback_call(
    request_id: str,
    score: float,
    keys: LedgerKeys,
    config: LedgerConfig,
    source: str = "feedback",
    owner: str | None = None,
) -> Call:
    """The feedback script's call: set this request's verdict, replacing any earlier one of no stronger source.

    With `owner`, only a request recorded with that key tag is graded; any other counts as unknown.
    """
    return Call(
        "feedback",
        [keys.request(request_id), keys.stream],
        [score_units(check_score(score)), keys.prefix, request_id, config.stream_maxlen, source,
         source_rank(source), owner or ""],
    )
