"""The Redis bus's ended-runs side (``RedisEnded``): the runs that end in this process recorded
and announced, the ``ended`` stream read for the runs opened here, the control messages that
travel on it (``broadcast``), and the ends a dead process did not announce.

The ledger is exact even when processes die: its changes ride in the same commits as the
entries and acknowledgements, and an acknowledgement counts only when its ``XACK`` removed the
entry (a delivery that ran twice is settled once). The commit in which a run's pending goes from
above 0 to 0 ends it, exactly once: that commit also puts it in ``ending``. This process then
calls ``hooks.ended`` (the engine records the end) and, once the trace store has it, announces
it: one script removes it from ``ending``, adds it to ``ended`` and deletes its hash, only if the
removal did something (so a run is announced once). A process that died between the two leaves the run in ``ending``; the others
announce what is older than the visibility timeout there (and a starting process, all of it).
Every process with hooks reads ``ended`` with a blocking ``XREAD`` (no group, from where the
stream was when the bus started) and calls ``hooks.finished`` for the runs it opened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisError

from wistro.bus.base import RunEnded, recorded
from wistro.bus.redis_base import (
    BACKOFF_S,
    ENDED_BLOCK_MS,
    RedisBusBase,
    as_text,
    cancelled_meanwhile,
)
from wistro.errors import BusError

log = logging.getLogger("wistro.bus")
_now = time.time

ENDED_MAXLEN = 100_000


class RedisEnded(RedisBusBase):
    """Ends of runs: announced once, and heard by the process that opened the run."""

    async def broadcast(self, message: dict[str, Any]) -> None:
        """On the ``ended`` stream every process reads (so it arrives in order with the rest)."""
        text = json.dumps(message)
        key = self._keys.ended
        try:
            await self._oneshot(
                lambda c: c.xadd(key, {"control": text}, maxlen=ENDED_MAXLEN, approximate=True)
            )
        except RedisError as e:
            raise BusError(f"redis bus at {self.public_url}: cannot broadcast: {e}") from e

    def _control(self, raw: Any) -> None:
        hooks = self._hooks
        if hooks is None or hooks.control is None:
            return
        try:
            hooks.control(json.loads(raw))
        except Exception:
            log.exception("redis bus: a control message failed: %r", raw)

    async def _announce_loop(self) -> None:
        while True:
            while not self._ending:
                self._kick_announce.clear()
                await self._kick_announce.wait()
            ending, self._ending = self._ending, []
            try:
                await self._announce(ending)
            except BaseException:
                self._ending[:0] = ending  # cancelled: aclose() announces them
                raise

    def _end(self, ended: list[RunEnded]) -> None:
        """Runs whose pending reached 0 here: recorded now (the engine), and what waits for one
        here is told at once; the announce loop announces them (which forgets their hashes)
        once the trace store has their ends, so a crash in between leaves them in ``ending``."""
        durable: Awaitable[None] | None = None
        hooks = self._hooks
        if hooks is not None:
            try:
                durable = hooks.ended(ended)
            except Exception:
                log.exception("redis bus: recording the end of %d runs failed", len(ended))
        for e in ended:
            self._finished(e)
        self._ending.append((durable, ended))
        self._kick_announce.set()

    async def _announce(self, ending: list[tuple[Awaitable[None] | None, list[RunEnded]]]) -> None:
        for durable, ended in ending:
            await recorded(durable, "redis bus", len(ended))
        script = self._scripts["announce"]
        args: list[Any] = [self.prefix, ENDED_MAXLEN]
        args += [e.trace_id for _, ended in ending for e in ended]
        await self._retry("announcing ended runs", lambda: script(args=args))

    def _finished(self, e: RunEnded) -> None:
        if e.trace_id in self._waiting:
            self._waiting.discard(e.trace_id)
            if self._hooks is not None:
                self._hooks.finished(e)

    async def _ended_loop(self) -> None:
        assert self._ended_reader is not None
        client = self._ended_reader
        key = self._keys.ended

        started = self._started_ms

        async def last_id() -> Any:
            """Where to read from: the stream's end, or, if it has grown since start() was
            called (a broadcast right after it), from then (a second early, for the clocks)."""
            last: Any = await client.xrevrange(key, "+", "-", count=1)
            end = as_text(last[0][0]) if last else "0-0"
            ms, _, seq = end.partition("-")
            if (int(ms), int(seq or 0)) <= (started - 1000, 0):
                return end
            return f"{max(0, started - 1000)}-0"

        since: Any = await self._retry("reading ended runs", last_id)
        self._ended_ready.set()
        pause = BACKOFF_S[0]
        while True:
            try:
                got: Any = await client.xread({key: since}, count=1000, block=ENDED_BLOCK_MS)
            except RedisError as e:
                cancelled_meanwhile()
                self._trouble("reading ended runs", e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            cancelled_meanwhile()
            pause = BACKOFF_S[0]
            self._fine()
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    since = entry_id
                    if b"control" in fields:  # broadcast(): activate/deactivate ...
                        self._control(fields[b"control"])
                        continue
                    ended = self._run_ended(fields)
                    if ended is not None:
                        self._finished(ended)

    def _run_ended(self, fields: dict[Any, Any]) -> RunEnded | None:
        try:
            f = {as_text(k): as_text(v) for k, v in fields.items()}
            return RunEnded(
                f["trace_id"], f.get("trigger", ""), f.get("topic", ""),
                float(f.get("start", 0)), float(f.get("end", 0)), int(f.get("events", 0)),
                int(f.get("errors", 0)), f.get("origin", ""), f.get("version") or None,
            )  # fmt: skip
        except (KeyError, ValueError) as e:
            log.error("redis bus: an unreadable ended-run entry (%s)", e)
            return None

    async def _recover_endings(self, older_than: float) -> None:
        """Runs that ended in a process that died before announcing them: announce them here."""
        assert self._redis is not None
        client, key = self._redis, self._keys.ending
        traces = await client.zrangebyscore(key, "-inf", repr(_now() - older_than), 0, 100)
        if not traces:
            return
        async with client.pipeline(transaction=False) as pipe:
            for t in traces:
                pipe.hgetall(self._keys.run(as_text(t)))
            hashes: Any = await pipe.execute()
        ended = []
        for t, h in zip(traces, hashes, strict=True):
            ended_run = self._run_ended({b"trace_id": t, **h})
            if ended_run is not None:
                ended.append(ended_run)
        if ended:
            self._end(ended)
