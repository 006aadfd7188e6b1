"""The Redis bus's consumer side (``RedisConsumer``): it reads deliveries into the lanes,
acknowledges them, keeps them while they run, claims dead workers' and gives back what did not
start.

Consuming. A reader task asks ``XREADGROUP`` for as many entries as the lanes (``Lanes``: the
per-step concurrency) have room for, over the streams whose lanes have room, blocking up to a
second. When a lane that was full while the reader blocked gets room again, ``CLIENT UNBLOCK``
ends the read early, so a busy step does not keep the others waiting. A delivery is acknowledged
when its handler returns. Every ``visibility_timeout_s / 3`` a heartbeat resets the idle time of
this process's entries (``XCLAIM`` to itself, ``JUSTID``), so a long handler is never taken from
a live worker; every ``visibility_timeout_s / 2`` each hosted stream's entries idle longer than
the timeout (a dead worker's) are claimed here; one delivered more than ``max_deliveries`` times
is handed to ``hooks.poisoned`` and acknowledged, so a poison message never blocks its stream.
(The upkeep task of ``redis.RedisBus`` runs the heartbeats and the claims.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError, ResponseError

from wistro.bus.base import Delivery
from wistro.bus.redis_base import BACKOFF_S, BLOCK_MS, RedisBusBase, as_text, cancelled_meanwhile
from wistro.bus.redis_keys import GROUP
from wistro.bus.redis_scripts import ACK, REQUEUE

log = logging.getLogger("wistro.bus")

UNBLOCK_AFTER_S = 0.002  # a read still out after this waits in Redis (it found nothing)


class RedisConsumer(RedisBusBase):
    """Takes the deliveries of the steps hosted here from their streams."""

    def _read_steps(self) -> bool:
        """The steps consumed here, again; True when they changed."""
        source = self._steps_source
        steps = (source() if callable(source) else source) or []
        hosted = [(step, self._keys.stream(step, self.version)) for step in dict.fromkeys(steps)]
        changed = hosted != self._hosted
        self._hosted = hosted
        return changed

    def _done(self, delivery: Delivery, token: Any) -> None:
        """A delivery's handler returned: acknowledge it in the next commit."""
        self._held.pop(token, None)
        self._append((ACK, token[0], token[1], delivery.event.trace_id))
        blocked = self._blocked_on
        if blocked and delivery.step in blocked and not self._unblocking:
            lanes = self._lanes
            assert lanes is not None
            if lanes.room(delivery.step) >= max(1, self._limit(delivery.step) // 2):
                self._unblocking = True  # the read waits without this step: end it early
                task = asyncio.get_running_loop().create_task(self._unblock())
                self._unblockers.add(task)
                task.add_done_callback(self._unblockers.discard)

    def _limit(self, step: str) -> int:
        limit = self._limits.get(step)
        if limit is None:
            limit = self._limits[step] = max(1, self._concurrency_of(step))
        return limit

    async def _create_groups(self) -> None:
        assert self._redis is not None
        async with self._redis.pipeline(transaction=False) as pipe:
            for _step, key in self._hosted:
                pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for r in results:
            if isinstance(r, ResponseError) and "BUSYGROUP" in str(r):
                continue
            if isinstance(r, Exception):
                raise r

    async def _read_loop(self) -> None:
        assert self._reader is not None and self._lanes is not None
        client, lanes = self._reader, self._lanes
        await self._retry("creating consumer groups", self._create_groups)
        pause = BACKOFF_S[0]
        while True:
            streams: dict[Any, Any] = {}
            full: set[str] = set()
            most = 0
            for step, key in self._hosted:
                room = lanes.room(step)
                if room > 0:
                    streams[key] = ">"
                    most = max(most, room)
                else:
                    full.add(step)
            if not streams:  # every lane is full: wait for room, not for Redis
                lanes.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BLOCK_MS / 1000):
                        await lanes.changed.wait()
                continue
            try:
                if self._reader_id is None:
                    self._reader_id = await client.client_id()
                self._read_no += 1
                self._read_at = asyncio.get_running_loop().time()
                self._blocked_on = full or None
                self._unblocking = False
                got: Any = await client.xreadgroup(
                    GROUP, self.me, streams, count=min(most, self.batch), block=BLOCK_MS
                )
            except ResponseError as e:
                cancelled_meanwhile()
                self._blocked_on = None
                if "NOGROUP" in str(e):  # Redis lost the groups (restarted without its data)
                    await self._retry("creating consumer groups", self._create_groups)
                    continue
                self._trouble("reading deliveries", e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            except RedisError as e:
                cancelled_meanwhile()
                self._blocked_on = None
                self._reader_id = None
                self._trouble("reading deliveries", e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            self._blocked_on = None
            cancelled_meanwhile()  # what it read returns to others after the timeout
            pause = BACKOFF_S[0]
            self._fine()
            for stream, entries in got or []:
                for entry_id, fields in entries:
                    await self._take(stream, entry_id, fields.get(b"d"), 1)

    async def _take(self, stream: bytes, entry_id: bytes, body: bytes | None, tries: int) -> None:
        """An entry read or claimed here: to its lane, or, delivered too often, to poison."""
        lanes = self._lanes
        assert lanes is not None
        token = (stream, entry_id)
        if token in self._held:
            return  # claimed again while it waits or runs here (a heartbeat came too late)
        try:
            if body is None:
                raise ValueError("no field 'd'")
            delivery = Delivery.from_json(body)
        except (ValueError, KeyError, TypeError) as e:
            log.error(
                "redis bus: dropped an unreadable entry %s of %s (%s)",
                as_text(entry_id),
                as_text(stream),
                e,
            )
            self._append((ACK, stream, entry_id, ""))
            return
        if tries > self.max_deliveries:
            if self._hooks is not None:
                try:
                    await self._hooks.poisoned(delivery, tries - 1)
                except Exception:  # acknowledged all the same: poison must not block the stream
                    log.exception(
                        "redis bus: recording poison delivery %s failed", delivery.event.id
                    )
            self._append((ACK, stream, entry_id, delivery.event.trace_id))
            return
        self._held[token] = body
        lanes.put(delivery, token)

    async def _unblock(self) -> None:
        """End the reader's wait in Redis (it waits without a step that has room again). A read
        that finds entries is back within a millisecond or two: only one still out after that
        is unblocked, so a busy reader is not sent an UNBLOCK per read."""
        assert self._redis is not None
        loop = asyncio.get_running_loop()
        read = self._read_no
        try:
            for attempt in range(1, 6):
                delay = self._read_at + UNBLOCK_AFTER_S * attempt - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                reader_id = self._reader_id
                if self._read_no != read or self._blocked_on is None or reader_id is None:
                    return  # that read is over
                if await self._redis.client_unblock(reader_id):
                    return
        except RedisError:
            pass  # the read ends on its own within a second

    async def _heartbeat(self) -> None:
        by_stream: dict[bytes, list[bytes]] = {}
        for stream, entry_id in self._held:
            by_stream.setdefault(stream, []).append(entry_id)
        args: list[Any] = [self.me]
        for stream, ids in by_stream.items():
            args += (stream, len(ids), *ids)
        await self._scripts["heartbeat"](args=args)

    async def _reclaim(self) -> None:
        idle_ms = int(self.visibility_timeout_s * 1000)
        keys = [key for _step, key in self._hosted]
        script = self._scripts["reclaim"]
        for i in range(0, len(keys), 500):
            got = await script(args=[self.me, idle_ms, self.batch, *keys[i : i + 500]])
            for stream, entry_id, body, tries in got:
                await self._take(stream, entry_id, body or None, int(tries))

    def _give_back(self) -> None:
        """What was read here and not started goes back to its stream for anyone."""
        if self._lanes is None:
            return
        for _delivery, token in self._lanes.clear():
            body = self._held.pop(token, None)
            if body is not None:
                self._append((REQUEUE, token[0], token[1], body))
