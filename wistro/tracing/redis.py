"""The Redis trace store: one project's traces in the Redis its processes share (the redis bus),
so that a run whose spans ran on several machines is one trace, wherever it is read from.

Key layout, every key under ``{prefix}:traces`` (``prefix`` is ``redis.prefix``, default
``wistro:<project>:<environment>``), so that projects and environments on one Redis never meet:

* ``:runs``: a sorted set of the trace ids by run start (ties by id): ``list_runs`` newest
  first, retention oldest first;
* ``:ids``: the same ids, all at score 0, so ``ZRANGEBYLEX [abcd (abcd\\xff`` finds a prefix;
* ``:run:{trace_id}``: the run, a hash of field -> the field's JSON;
* ``:rec:{trace_id}``: a hash of the trace's records, each the JSON array of its fields in
  dataclass order: ``e:{id}`` an event, ``s:{id}`` a span (written again: replaced),
  ``o:{writer}{n}`` a state operation, ``d:{id}`` an empty marker of a dead letter;
* ``:tlogs:{trace_id}``: a sorted set of the trace's logs, score the log's ``seq``, member the
  JSON array ``[seq, fields...]``; ``:logs``: every log as ``"{seq} {trace_id}"`` by ``seq``
  (``logs(after=...)`` follows it); ``:logseq``: the counter that numbers them (``INCR``);
* ``:dead``: a hash of dead-letter id -> its JSON array; ``:dead-ids``: their ids for prefixes.

A ``write`` is one ``MULTI``/``EXEC`` (one round trip): a script upserts the runs (a run written
again changes only its status, end and counts, and one that ended is never set back to running
nor marked interrupted, atomically however many processes write), ``HSET`` of the records, a script that numbers the logs
as it stores them (so the sequence follows commit order and ``wistro logs -f`` misses nothing
another process committed), the dead letters, and a script that deletes the oldest runs beyond
``retention_runs`` with everything they recorded. The logs script runs once per write: a
transaction sent again after a connection lost on its way (Redis may have applied it) does not
store its logs twice. Reads run scripts or transactions too, so each sees one moment.

The scripts name keys they compute (a trace's keys): one Redis, not a Redis Cluster. Redis
that cannot be reached, or does not answer within the socket timeout, fails the call with one
``TraceStoreError`` line naming the URL (without its password); the client reconnects on its
own once Redis is back. The records are JSON with ASCII escapes, so any text round-trips.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import MISSING, fields
from operator import attrgetter, itemgetter
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from wistro.errors import TraceStoreError
from wistro.tracing.memory import (
    DEAD_LETTER_HINT,
    MIN_PREFIX,
    RUN_UPDATE_FIELDS,
    TRACE_HINT,
    pick_one,
)
from wistro.tracing.records import (
    Batch,
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
)
from wistro.tracing.store import TraceStore

_dumps = functools.partial(json.dumps, separators=(",", ":"))  # ASCII: lone surrogates survive
# A run written with one of these never replaces an end already written (running: the origin's
# start landing after another process's end; interrupted: recovery, which only ends open runs).
_NOT_AN_END = ("running", "interrupted")
_GUARD_TTL_S = 60  # how long a write's logs are known to be stored (a resent write skips them)

# Every record as the JSON array of its fields; a row written by an older version has fewer
# (they take their defaults), one written by a newer version more (they are left out).
_Codec = tuple[tuple[str, ...], tuple[Any, ...], Callable[[Any], tuple[Any, ...]]]


def _codec(cls: type) -> _Codec:
    names = tuple(f.name for f in fields(cls))
    defaults = tuple(None if f.default is MISSING else f.default for f in fields(cls))
    return names, defaults, attrgetter(*names)


_EVENT, _SPAN, _OP, _LOG, _DEAD = map(
    _codec, (EventRecord, SpanRecord, StateOpRecord, LogRecord, DeadLetter)
)
_RUN_NAMES = tuple(f.name for f in fields(RunRecord))
_RUN_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(RunRecord)}
# The update fields first: the upsert script sets the first len(RUN_UPDATE_FIELDS) pairs of a
# known run, every pair of a new one.
_RUN_ORDER = RUN_UPDATE_FIELDS + tuple(n for n in _RUN_NAMES if n not in RUN_UPDATE_FIELDS)
_SORTS = {"events": itemgetter("ts", "id"), "spans": itemgetter("start", "id")}

# KEYS: runs, ids. ARGV: run key base, fields per run, update fields, then per run: trace id,
# start, 1 if it may replace an end (its status is an end), then its field/value pairs (the
# update fields first). A run stored as running takes any update.
_UPSERT_RUNS = f"""
local RUNNING = '{_dumps("running")}'
local base, nf, nu = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
while i <= #ARGV do
  local tid, start, ends = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key, first = base .. tid, i + 3
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, unpack(ARGV, first, first + 2 * nf - 1))
    redis.call('ZADD', KEYS[1], start, tid)
    redis.call('ZADD', KEYS[2], 0, tid)
  elseif ends == '1' or redis.call('HGET', key, 'status') == RUNNING then
    redis.call('HSET', key, unpack(ARGV, first, first + 2 * nu - 1))
  end
  i = first + 2 * nf
end
return 0
"""

# KEYS: the log counter, the log index, this write's guard. ARGV: trace logs key base, then per
# log: its trace id and the JSON array of its fields without the opening bracket.
_APPEND_LOGS = f"""
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', {_GUARD_TTL_S}) then return 0 end
for i = 2, #ARGV, 2 do
  local tid = ARGV[i]
  local seq = redis.call('INCR', KEYS[1])
  redis.call('ZADD', ARGV[1] .. tid, seq, '[' .. seq .. ',' .. ARGV[i + 1])
  redis.call('ZADD', KEYS[2], seq, seq .. ' ' .. tid)
end
return 0
"""

# KEYS: runs, ids, log index, dead letters, dead-letter ids. ARGV: retention, then the key bases
# of a run, its records and its logs.
_PRUNE = """
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local doomed = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
for _, tid in ipairs(doomed) do
  local rec, tlogs = ARGV[3] .. tid, ARGV[4] .. tid
  local seqs = redis.call('ZRANGE', tlogs, 0, -1, 'WITHSCORES')
  for j = 2, #seqs, 2 do
    redis.call('ZREMRANGEBYSCORE', KEYS[3], seqs[j], seqs[j])
  end
  for _, field in ipairs(redis.call('HKEYS', rec)) do
    if string.sub(field, 1, 2) == 'd:' then
      local id = string.sub(field, 3)
      local row = redis.call('HGET', KEYS[4], id)
      local ok, dead = pcall(cjson.decode, row or '[]')
      if row and (not ok or dead[2] == tid) then  -- not if it was written again for another run
        redis.call('HDEL', KEYS[4], id)
        redis.call('ZREM', KEYS[5], id)
      end
    end
  end
  redis.call('DEL', ARGV[2] .. tid, rec, tlogs)
  redis.call('ZREM', KEYS[2], tid)
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
return #doomed
"""

# KEYS: runs. ARGV: limit, status (JSON, '' for any), topic (JSON, '' for any), run key base.
_LIST_RUNS = """
local limit, status, topic, base = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local page = limit
if status ~= '' or topic ~= '' then page = math.max(limit, 256) end
local out, pos = {}, 0
while #out < limit do
  local ids = redis.call('ZREVRANGE', KEYS[1], pos, pos + page - 1)
  if #ids == 0 then break end
  for _, tid in ipairs(ids) do
    local key = base .. tid
    if (status == '' or redis.call('HGET', key, 'status') == status)
        and (topic == '' or redis.call('HGET', key, 'topic') == topic) then
      out[#out + 1] = redis.call('HGETALL', key)
      if #out >= limit then break end
    end
  end
  pos = pos + page
end
return out
"""

# KEYS: the log index. ARGV: after, limit, trace logs key base.
_FOLLOW_LOGS = """
local out = {}
local seen = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
for _, entry in ipairs(seen) do
  local seq, tid = string.match(entry, '^(%d+) (.*)$')
  local row = redis.call('ZRANGEBYSCORE', ARGV[3] .. tid, seq, seq)
  if row[1] then out[#out + 1] = row[1] end
end
return out
"""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def public_url(url: str) -> str:
    """``url`` without its password and query (which may carry one), for messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "redis://?"


def _reason(e: BaseException) -> str:
    """The operating system's words for a connection failure (``Connection refused``), else the
    client's message."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return str(e).strip() or type(e).__name__


def _decode(codec: _Codec, raw: str | bytes) -> dict[str, Any]:
    names, defaults, _ = codec
    values = json.loads(raw)
    return dict(zip(names, [*values, *defaults[len(values) :]], strict=False))


def _log_row(raw: str | bytes) -> dict[str, Any]:
    seq, *values = json.loads(raw)
    names, defaults, _ = _LOG
    row = dict(zip(names, [*values, *defaults[len(values) :]], strict=False))
    row["seq"] = seq
    return row


def _run_row(flat: dict[str, str] | list[str]) -> dict[str, Any]:
    """A run's hash (a dict, or the flat list a script returns) as a row in field order."""
    if isinstance(flat, list):
        flat = dict(zip(flat[::2], flat[1::2], strict=True))
    return {n: json.loads(flat[n]) if n in flat else _RUN_DEFAULTS[n] for n in _RUN_NAMES}


def _guarded(
    method: Callable[Concatenate[RedisTraceStore, _P], _R],
) -> Callable[Concatenate[RedisTraceStore, _P], _R]:
    """Redis errors of a store method come out as one ``TraceStoreError`` naming the URL."""

    @functools.wraps(method)
    def wrapper(self: RedisTraceStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except RedisError as e:
            raise self._failure(e) from None

    return wrapper


class RedisTraceStore(TraceStore):
    """Traces in Redis under ``prefix``; safe to share between processes and machines. Sync (the
    port is): the recorder writes from its thread, readers read from theirs, over one pool."""

    def __init__(
        self, url: str, prefix: str, retention_runs: int = 10_000, *, timeout_s: float = 5.0
    ) -> None:
        if not prefix:
            raise TraceStoreError("the redis trace store needs a non-empty key prefix")
        self.url = url
        self.public_url = public_url(url)
        self.prefix = prefix
        self.retention_runs = retention_runs
        self.timeout_s = timeout_s
        try:
            self._redis = redis.Redis.from_url(
                url,
                decode_responses=True,
                encoding_errors="surrogatepass",  # ids with lone surrogates round-trip
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_keepalive=True,
                health_check_interval=30,  # PING a connection idle this long before reusing it
                # A command that fails on a dead connection (Redis restarted) runs once more on a
                # new one; a write sent twice is harmless (see the logs script).
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
            )
        except ValueError as e:
            raise TraceStoreError(
                f"invalid redis URL {self.public_url!r} for the trace store: {e}",
                hint="redis://[[user]:password@]host[:port][/db], rediss://..., or unix://path",
            ) from None
        base = f"{prefix}:traces"
        self._runs, self._ids = f"{base}:runs", f"{base}:ids"
        self._run, self._rec, self._tlogs = f"{base}:run:", f"{base}:rec:", f"{base}:tlogs:"
        self._logs, self._logseq = f"{base}:logs", f"{base}:logseq"
        self._dead, self._dead_ids = f"{base}:dead", f"{base}:dead-ids"
        self._guard = f"{base}:w:{os.urandom(6).hex()}:"  # + the write's number
        self._writes = itertools.count(1)
        self._ops = itertools.count(1)  # state operations' keys: insertion order within a writer
        self._writer = os.urandom(4).hex()
        self._list_runs = self._redis.register_script(_LIST_RUNS)
        self._follow_logs = self._redis.register_script(_FOLLOW_LOGS)

    def _failure(self, e: RedisError) -> TraceStoreError:
        at = f"redis trace store at {self.public_url}"
        hint = "check that Redis runs there (traces.url, redis.url or $REDIS_URL in wistro.yml)"
        if isinstance(e, AuthenticationError):
            return TraceStoreError(f"{at} refused the credentials: {e}")
        if isinstance(e, RedisTimeoutError):
            return TraceStoreError(
                f"{at} did not answer within {self.timeout_s:g}s ({_reason(e)})", hint=hint
            )
        if isinstance(e, RedisConnectionError):
            return TraceStoreError(f"{at} is unreachable ({_reason(e)})", hint=hint)
        return TraceStoreError(f"{at} failed: {type(e).__name__}: {e}")

    # -- writing ---------------------------------------------------------------------------

    @_guarded
    def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        pipe = self._redis.pipeline(transaction=True)
        if batch.runs:
            args: list[Any] = [self._run, len(_RUN_ORDER), len(RUN_UPDATE_FIELDS)]
            for run in batch.runs:
                args += (run.trace_id, run.start, 0 if run.status in _NOT_AN_END else 1)
                for name in _RUN_ORDER:
                    args += (name, _dumps(getattr(run, name)))
            pipe.eval(_UPSERT_RUNS, 2, self._runs, self._ids, *args)
        records: dict[str, dict[Any, Any]] = {}
        for tag, codec, rows in (("e", _EVENT, batch.events), ("s", _SPAN, batch.spans)):
            for record in rows:
                mapping = records.get(record.trace_id)
                if mapping is None:
                    mapping = records[record.trace_id] = {}
                mapping[f"{tag}:{record.id}"] = _dumps(codec[2](record))
        for op in batch.state_ops:
            key = f"o:{self._writer}{next(self._ops):012x}"
            records.setdefault(op.trace_id, {})[key] = _dumps(_OP[2](op))
        for dead in batch.dead_letters:
            records.setdefault(dead.trace_id, {})[f"d:{dead.id}"] = ""
        for trace_id, mapping in records.items():
            pipe.hset(self._rec + trace_id, mapping=mapping)
        if batch.logs:
            args = [self._tlogs]
            for log in batch.logs:
                args += (log.trace_id, _dumps(_LOG[2](log))[1:])
            guard = f"{self._guard}{next(self._writes)}"
            pipe.eval(_APPEND_LOGS, 3, self._logseq, self._logs, guard, *args)
        if batch.dead_letters:
            pipe.hset(self._dead, mapping={d.id: _dumps(_DEAD[2](d)) for d in batch.dead_letters})
            pipe.zadd(self._dead_ids, dict.fromkeys((d.id for d in batch.dead_letters), 0))
        if batch.runs:  # only new runs can take the count beyond the retention
            keys = (self._runs, self._ids, self._logs, self._dead, self._dead_ids)
            pipe.eval(_PRUNE, 5, *keys, self.retention_runs, self._run, self._rec, self._tlogs)
        pipe.execute()

    @_guarded
    def mark_replayed(self, dead_letter_id: str) -> None:
        found = self._resolve(self._dead_ids, dead_letter_id, "dead letter", DEAD_LETTER_HINT)

        def mark(pipe: redis.client.Pipeline) -> None:  # again if the hash changed meanwhile
            raw = pipe.hget(self._dead, found)
            if raw is None:  # deleted (retention) since it was found
                pick_one("dead letter", found, [], DEAD_LETTER_HINT)
            row = _decode(_DEAD, str(raw))
            row["replayed"] = True
            pipe.multi()
            pipe.hset(self._dead, found, _dumps([row[n] for n in _DEAD[0]]))

        self._redis.transaction(mark, self._dead)

    # -- reading ---------------------------------------------------------------------------

    def _resolve(self, index: str, wanted: str, kind: str, hint: str) -> str:
        """The one id of ``index`` (a sorted set at score 0) that ``wanted`` is, or a unique
        prefix of (a range of at most 6 ids, in order: enough to say it is ambiguous)."""
        key = wanted.encode("utf-8", "surrogatepass")  # as the client encodes it
        if len(wanted) < MIN_PREFIX:
            matches = [wanted] if self._redis.zscore(index, key) is not None else []
        else:  # every id that starts with it sorts below it + ff: no UTF-8 byte is ff
            found = self._redis.zrangebylex(index, b"[" + key, b"(" + key + b"\xff", 0, 6)
            matches = [str(m) for m in found]  # str already (decode_responses)
        return pick_one(kind, wanted, matches, hint)

    def _read_trace(self, trace_id: str) -> list[Any]:
        """The run's hash, the records' hash and the logs of one trace, at one moment."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(self._run + trace_id)
        pipe.hgetall(self._rec + trace_id)
        pipe.zrange(self._tlogs + trace_id, 0, -1)
        return list(pipe.execute())

    @_guarded
    def list_runs(
        self, limit: int = 50, status: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        wanted = ("" if status is None else _dumps(status), "" if topic is None else _dumps(topic))
        rows = self._list_runs(keys=[self._runs], args=[limit, *wanted, self._run])
        return [_run_row(row) for row in rows]

    @_guarded
    def get_run(self, trace_id: str) -> dict[str, Any]:
        found = trace_id
        run, recs, logs = self._read_trace(trace_id)  # a full id: one round trip
        if not run:
            found = self._resolve(self._ids, trace_id, "trace", TRACE_HINT)
            run, recs, logs = self._read_trace(found)
            if not run:  # deleted (retention) since it was found
                pick_one("trace", found, [], TRACE_HINT)
        out: dict[str, list[Any]] = {"events": [], "spans": [], "state_ops": []}
        ops: list[tuple[float, str, dict[str, Any]]] = []
        dead_ids: list[str] = []
        for field, raw in recs.items():
            tag, _, key = field.partition(":")
            if tag == "e":
                out["events"].append(_decode(_EVENT, raw))
            elif tag == "s":
                out["spans"].append(_decode(_SPAN, raw))
            elif tag == "o":
                op = _decode(_OP, raw)
                ops.append((op["ts"], key, op))
            elif tag == "d":
                dead_ids.append(key)
        for table, key_of in _SORTS.items():
            out[table].sort(key=key_of)
        ops.sort(key=itemgetter(0, 1))
        dead: list[dict[str, Any]] = []
        if dead_ids:
            rows = (_decode(_DEAD, r) for r in self._redis.hmget(self._dead, dead_ids) if r)
            dead = sorted((d for d in rows if d["trace_id"] == found), key=itemgetter("ts", "id"))
        return {
            "run": _run_row(run),
            "spans": out["spans"],
            "events": out["events"],
            "logs": [_log_row(raw) for raw in logs],
            "state_ops": [op for _, _, op in ops],
            "dead_letters": dead,
        }

    @_guarded
    def logs(
        self, after: int = 0, limit: int = 1000, trace_id: str | None = None
    ) -> list[dict[str, Any]]:
        if trace_id is None:
            rows = self._follow_logs(keys=[self._logs], args=[after, limit, self._tlogs])
        else:
            rows = self._redis.zrangebyscore(
                self._tlogs + trace_id, f"({after}", "+inf", start=0, num=limit
            )
        return [_log_row(raw) for raw in rows]

    @_guarded
    def dead_letters(self, include_replayed: bool = False) -> list[dict[str, Any]]:
        rows = (_decode(_DEAD, raw) for raw in self._redis.hvals(self._dead))
        wanted = [d for d in rows if include_replayed or not d["replayed"]]
        return sorted(wanted, key=itemgetter("ts", "id"), reverse=True)

    @_guarded
    def get_dead_letter(self, id_or_prefix: str) -> dict[str, Any]:
        found = self._resolve(self._dead_ids, id_or_prefix, "dead letter", DEAD_LETTER_HINT)
        raw = self._redis.hget(self._dead, found)
        if raw is None:  # deleted (retention) since it was found
            pick_one("dead letter", found, [], DEAD_LETTER_HINT)
        return _decode(_DEAD, str(raw))

    def close(self) -> None:
        self._redis.close()
