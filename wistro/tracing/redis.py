"""The Redis trace store: one project's traces in the Redis its processes share (the redis bus),
so that a run whose spans ran on several machines is one trace, wherever it is read from.

Key layout, every key under ``{prefix}:traces`` (``prefix`` is ``redis.prefix``, default
``wistro:<project>:<environment>``), so that projects and environments on one Redis never meet:

* ``:runs``: a sorted set of the trace ids by run start (ties by id): ``list_runs`` newest
  first, retention oldest first;
* ``:ids``: the same ids, all at score 0, so ``ZRANGEBYLEX [abcd (abcd\\xff`` finds a prefix;
* ``:run:{trace_id}``: the run, a hash of field -> the field's JSON;
* ``:rec:{trace_id}``: a hash of what the trace recorded: ``c:{n}`` a *chunk*, the trace's
  events, spans and state operations of one write (``[[events], [spans], [state ops]]``, each
  record the JSON array of its fields in dataclass order), numbered in commit order by the
  counter ``:chunkseq`` (an event or span written again replaces the earlier one when read);
  ``d:{id}`` an empty marker of a dead letter. Most runs end within one write, so most traces
  hold one chunk (a field per record took 15% more memory, and a little more time);
* ``:tlogs:{trace_id}``: a sorted set of the trace's logs, score the log's ``seq``, member the
  JSON array ``[seq, fields...]``; ``:logs``: every log as ``"{seq} {trace_id}"`` by ``seq``
  (``logs(after=...)`` follows it); ``:logseq``: the counter that numbers them (``INCR``);
* ``:dead``: a hash of dead-letter id -> its JSON array; ``:dead-ids``: their ids for prefixes.

A ``write`` is one ``MULTI``/``EXEC`` (one round trip): a script upserts the runs (a run written
again changes only its status, end and counts, and one that ended is never set back to running
nor marked interrupted, atomically however many processes write); a script stores the chunks
and the logs, numbering the logs as it stores them (so the sequence follows commit order and
``wistro logs -f`` misses nothing another process committed); the dead letters; a script deletes
the oldest runs beyond ``retention_runs`` with everything they recorded. The chunks and logs
script runs once per write: a transaction sent again after a connection lost on its way (Redis
may have applied it) does not store them twice. Reads run scripts or transactions too, so each
sees one moment.

The scripts name keys they compute (a trace's keys): one Redis, not a Redis Cluster. Redis
that cannot be reached, or does not answer within the socket timeout, fails the call with one
``TraceStoreError`` line naming the URL (without its password); the client reconnects on its
own once Redis is back. The records are JSON with ASCII escapes, so any text round-trips.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, fields
from operator import attrgetter, itemgetter
from typing import Any, Concatenate, ParamSpec, TypeVar

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
    OPEN_STATUSES,
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
from wistro.tracing.writer_process import WriterSpec
from wistro.urls import public_url

_ascii_json = json.JSONEncoder(separators=(",", ":")).encode  # stored: any text round-trips
_string_json = json.encoder.encode_basestring_ascii
_payload_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # ids as is
_SCAN = 1_000  # runs a list_runs call reads in Redis at a time
_GUARD_TTL_S = 60  # a write's chunks and logs are known stored this long (a resend skips them)

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
_EVENT_ORDER, _SPAN_ORDER, _OP_ORDER = (
    itemgetter("ts", "id"),
    itemgetter("start", "id"),
    itemgetter("ts"),
)

# The scripts of a write take JSON arguments holding all their records: packing thousands of
# arguments costs the client more than Redis spends on the writes. Values Redis stores (a run's
# fields, a chunk) are JSON strings inside it, so Lua's cjson never re-encodes a number.

# KEYS: runs, ids. ARGV: run key base, [[trace id, start, 1 if it may replace an end (its status
# is an end), [each field's JSON in _RUN_ORDER]], ...]. A run stored as running takes any update.
_UPSERT_RUNS = (
    """
local NAMES, NU, RUNNING = {@NAMES@}, @NU@, '@RUNNING@'
for _, r in ipairs(cjson.decode(ARGV[2])) do
  local tid, start, ends, values = r[1], r[2], r[3], r[4]
  local key, n = ARGV[1] .. tid, 0
  if redis.call('EXISTS', key) == 0 then
    n = #NAMES
    redis.call('ZADD', KEYS[1], start, tid)
    redis.call('ZADD', KEYS[2], 0, tid)
  elseif ends == 1 or redis.call('HGET', key, 'status') == RUNNING then
    n = NU
  end
  if n > 0 then
    local kv = {}
    for j = 1, n do
      kv[2 * j - 1], kv[2 * j] = NAMES[j], values[j]
    end
    redis.call('HSET', key, unpack(kv))
  end
end
return 0
""".replace("@NAMES@", ", ".join(f"'{n}'" for n in _RUN_ORDER))
    .replace("@NU@", str(len(RUN_UPDATE_FIELDS)))
    .replace("@RUNNING@", _ascii_json("running"))
)

# KEYS: the chunk counter, the log counter, the log index, this write's guard. ARGV: the key bases
# of a trace's records and its logs, [[trace id, chunk JSON], ...], [[trace id, the log's JSON
# array without its opening bracket], ...].
_APPEND = f"""
if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', {_GUARD_TTL_S}) then return 0 end
for _, chunk in ipairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', ARGV[1] .. chunk[1], 'c:' .. redis.call('INCR', KEYS[1]), chunk[2])
end
for _, log in ipairs(cjson.decode(ARGV[4])) do
  local tid = log[1]
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', ARGV[2] .. tid, seq, '[' .. seq .. ',' .. log[2])
  redis.call('ZADD', KEYS[3], seq, seq .. ' ' .. tid)
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

# The read scripts answer with one JSON text built from the stored JSON (a run's hash as an
# object, chunks and logs as they are): a reply of one string, where a nested reply of many
# would cost the client's protocol parser more than the rest of the call.
_READ_HELPERS = """
local function run_json(flat)  -- a run's hash (field -> JSON) as a JSON object
  local parts = {}
  for j = 1, #flat, 2 do parts[#parts + 1] = '"' .. flat[j] .. '":' .. flat[j + 1] end
  return '{' .. table.concat(parts, ',') .. '}'
end
"""

# KEYS: runs. ARGV: how many runs are wanted, status (JSON, '' for any), topic (JSON, '' for
# any), run key base, the rank to start from (newest first), how many ids to look at. Returns
# [the rank to go on from (-1: none left), [run, ...]]: a call reads at most that many runs, so
# a filter over a long list never holds Redis up for long.
_LIST_RUNS = (
    _READ_HELPERS
    + """
local want, status, topic, base = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local pos, scan = tonumber(ARGV[5]), tonumber(ARGV[6])
local ids = redis.call('ZREVRANGE', KEYS[1], pos, pos + scan - 1)
local out, nxt = {}, pos + #ids
if #ids < scan then nxt = -1 end
for i, tid in ipairs(ids) do
  local key = base .. tid
  if (status == '' or redis.call('HGET', key, 'status') == status)
      and (topic == '' or redis.call('HGET', key, 'topic') == topic) then
    out[#out + 1] = run_json(redis.call('HGETALL', key))
    if #out >= want then
      nxt = pos + i
      break
    end
  end
end
return '[' .. nxt .. ',[' .. table.concat(out, ',') .. ']]'
"""
)

# KEYS: the log index. ARGV: after, limit, trace logs key base, a trace id or ''. Returns
# [[seq, fields...], ...] in order.
_LOGS = """
local out = {}
if ARGV[4] ~= '' then
  out = redis.call('ZRANGEBYSCORE', ARGV[3] .. ARGV[4], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
else
  local seen = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
  for _, entry in ipairs(seen) do
    local seq, tid = string.match(entry, '^(%d+) (.*)$')
    local row = redis.call('ZRANGEBYSCORE', ARGV[3] .. tid, seq, seq)
    if row[1] then out[#out + 1] = row[1] end
  end
end
return '[' .. table.concat(out, ',') .. ']'
"""

# KEYS: ids, dead letters. ARGV: the id wanted, 1 if it may be a prefix, then the key bases of a
# run, its records and its logs. Returns [run, {chunk number: chunk}, [log, ...], [dead letter,
# ...]] for the trace (a JSON text), else {the ids it is a prefix of (at most 6)}.
_GET_TRACE = (
    _READ_HELPERS
    + """
local function trace(tid)
  local run = redis.call('HGETALL', ARGV[3] .. tid)
  if #run == 0 then return nil end
  local rec, chunks, dead = redis.call('HGETALL', ARGV[4] .. tid), {}, {}
  for j = 1, #rec, 2 do
    local tag = string.sub(rec[j], 1, 2)
    if tag == 'c:' then
      chunks[#chunks + 1] = '"' .. string.sub(rec[j], 3) .. '":' .. rec[j + 1]
    elseif tag == 'd:' then
      local row = redis.call('HGET', KEYS[2], string.sub(rec[j], 3))
      if row then dead[#dead + 1] = row end
    end
  end
  local logs = redis.call('ZRANGE', ARGV[5] .. tid, 0, -1)
  return '[' .. run_json(run) .. ',{' .. table.concat(chunks, ',') .. '},['
    .. table.concat(logs, ',') .. '],[' .. table.concat(dead, ',') .. ']]'
end
local wanted = ARGV[1]
local got = trace(wanted)
if got then return got end
if ARGV[2] ~= '1' then return {{}} end
local matches = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. wanted, '(' .. wanted .. '\\255',
  'LIMIT', 0, 6)
if #matches == 1 then
  got = trace(matches[1])
  if got then return got end
end
return {matches}
"""
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reason(e: BaseException) -> str:
    """The operating system's words for a connection failure (``Connection refused``), else the
    client's message."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return str(e).strip() or type(e).__name__


def _value_json(value: Any) -> str:
    """``_ascii_json(value)`` for one field of a run, a few times faster for the usual types
    (the encoder builds itself anew for each call: most of the cost of a float)."""
    kind = type(value)
    if kind is str:
        return _string_json(value)
    if value is None:
        return "null"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    return _ascii_json(value)


def _row(codec: _Codec, values: list[Any]) -> dict[str, Any]:
    names, defaults, _ = codec
    return dict(zip(names, [*values, *defaults[len(values) :]], strict=False))


def _decode(codec: _Codec, raw: str | bytes) -> dict[str, Any]:
    return _row(codec, json.loads(raw))


def _log_row(stored: list[Any]) -> dict[str, Any]:
    """A stored log, ``[seq, fields...]``, as a row: its fields and ``seq``."""
    seq, *values = stored
    row = _row(_LOG, values)
    row["seq"] = seq
    return row


def _run_row(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored run as a row in field order (a field it lacks, written by an older version,
    takes its default)."""
    return {n: stored[n] if n in stored else _RUN_DEFAULTS[n] for n in _RUN_NAMES}


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
        except json.JSONDecodeError as e:  # written by something else under the prefix
            raise TraceStoreError(
                f"redis trace store at {self.public_url}: a stored record under "
                f"{self.prefix!r} is not JSON ({e})"
            ) from None

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
                # new one; a write sent twice is harmless (see _APPEND).
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
        self._chunkseq = f"{base}:chunkseq"
        self._dead, self._dead_ids = f"{base}:dead", f"{base}:dead-ids"
        self._guard = f"{base}:w:{os.urandom(6).hex()}:"  # + the write's number
        self._writes = itertools.count(1)
        self._list_runs = self._redis.register_script(_LIST_RUNS)
        self._logs_script = self._redis.register_script(_LOGS)
        self._get_trace = self._redis.register_script(_GET_TRACE)

    def writer_spec(self) -> WriterSpec:
        return WriterSpec(
            "wistro.tracing.redis:RedisTraceStore",
            {
                "url": self.url,
                "prefix": self.prefix,
                "retention_runs": self.retention_runs,
                "timeout_s": self.timeout_s,
            },
        )

    def _failure(self, e: RedisError) -> TraceStoreError:
        at = f"redis trace store at {self.public_url}"
        hint = "is Redis running there? traces.url, else redis.url, else $REDIS_URL names it"
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
            runs = [
                (
                    run.trace_id,
                    repr(float(run.start)),  # a string: Lua's numbers print 14 digits
                    0 if run.status in OPEN_STATUSES else 1,
                    [_value_json(getattr(run, name)) for name in _RUN_ORDER],
                )
                for run in batch.runs
            ]
            pipe.eval(_UPSERT_RUNS, 2, self._runs, self._ids, self._run, _payload_json(runs))
        chunks: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
        parts: tuple[tuple[_Codec, list[Any]], ...] = (
            (_EVENT, batch.events),
            (_SPAN, batch.spans),
            (_OP, batch.state_ops),
        )
        for index, (codec, rows) in enumerate(parts):
            getter = codec[2]
            for record in rows:
                chunk = chunks.get(record.trace_id)
                if chunk is None:
                    chunk = chunks[record.trace_id] = ([], [], [])
                chunk[index].append(getter(record))
        if chunks or batch.logs:
            pipe.eval(
                _APPEND,
                4,
                self._chunkseq,
                self._logseq,
                self._logs,
                f"{self._guard}{next(self._writes)}",
                self._rec,
                self._tlogs,
                _payload_json([(tid, _ascii_json(chunk)) for tid, chunk in chunks.items()]),
                _payload_json([(r.trace_id, _ascii_json(_LOG[2](r))[1:]) for r in batch.logs]),
            )
        if batch.dead_letters:
            letters: dict[Any, Any] = {d.id: _ascii_json(_DEAD[2](d)) for d in batch.dead_letters}
            pipe.hset(self._dead, mapping=letters)
            pipe.zadd(self._dead_ids, dict.fromkeys(letters, 0))
            for dead in batch.dead_letters:  # so that its trace finds it, and retention too
                pipe.hset(self._rec + dead.trace_id, f"d:{dead.id}", "")
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
            pipe.hset(self._dead, found, _ascii_json([row[n] for n in _DEAD[0]]))

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

    @_guarded
    def list_runs(
        self, limit: int = 50, status: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        wanted = (
            "" if status is None else _ascii_json(status),
            "" if topic is None else _ascii_json(topic),
        )
        runs: list[dict[str, Any]] = []
        seen: set[str] = set()
        pos = 0
        while pos >= 0 and len(runs) < limit:
            args: list[Any] = [limit - len(runs), *wanted, self._run, pos, _SCAN]
            pos, rows = json.loads(self._list_runs(keys=[self._runs], args=args))
            for row in rows:  # a run that started meanwhile moved the others down: seen again
                if row["trace_id"] not in seen:
                    seen.add(row["trace_id"])
                    runs.append(_run_row(row))
        return runs[:limit]

    @_guarded
    def get_run(self, trace_id: str) -> dict[str, Any]:
        got = self._get_trace(  # one round trip, for a full id or a prefix
            keys=[self._ids, self._dead],
            args=[trace_id, int(len(trace_id) >= MIN_PREFIX), self._run, self._rec, self._tlogs],
        )
        if not isinstance(got, str):  # no trace, or several
            found = pick_one("trace", trace_id, [str(m) for m in got[0]], TRACE_HINT)
            pick_one("trace", found, [], TRACE_HINT)  # the one match was deleted meanwhile
        run, chunks, logs, dead_rows = json.loads(got)
        found = run["trace_id"]
        events: dict[str, dict[str, Any]] = {}
        spans: dict[str, dict[str, Any]] = {}
        ops: list[dict[str, Any]] = []
        # In commit order: an event or span written again replaces the earlier one.
        for _, (chunk_events, chunk_spans, chunk_ops) in sorted(
            (int(n), chunk) for n, chunk in chunks.items()
        ):
            for values in chunk_events:
                event = _row(_EVENT, values)
                events[event["id"]] = event
            for values in chunk_spans:
                span = _row(_SPAN, values)
                spans[span["id"]] = span
            ops.extend(_row(_OP, values) for values in chunk_ops)
        rows = (_row(_DEAD, values) for values in dead_rows)
        # not one written again for another run since
        dead = sorted((d for d in rows if d["trace_id"] == found), key=itemgetter("ts", "id"))
        return {
            "run": _run_row(run),
            "spans": sorted(spans.values(), key=_SPAN_ORDER),
            "events": sorted(events.values(), key=_EVENT_ORDER),
            "logs": [_log_row(stored) for stored in logs],
            "state_ops": sorted(ops, key=_OP_ORDER),  # ties as written
            "dead_letters": dead,
        }

    @_guarded
    def logs(
        self, after: int = 0, limit: int = 1000, trace_id: str | None = None
    ) -> list[dict[str, Any]]:
        args: list[Any] = [after, limit, self._tlogs, "" if trace_id is None else trace_id]
        return [
            _log_row(row) for row in json.loads(self._logs_script(keys=[self._logs], args=args))
        ]

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
