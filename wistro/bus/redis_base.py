"""What the parts of the Redis bus share (``RedisBusBase``): its settings and state, its
connections (clients of the event loop that opened them, the scripts registered on them), the
tasks it keeps running, the operations it buffers for the committer, and what it does while
Redis is unreachable.

Redis unreachable (restarted, a network cut): every task retries with a backoff from 0.1 s to
2 s, one warning line names the URL (without its password), and each resumes when Redis is back;
nothing buffered is lost (a commit that failed is sent again), and ``flush`` keeps waiting
meanwhile, without spinning.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from wistro.bus.base import BusHooks, ConcurrencyOf, EventBus, RunEnded
from wistro.bus.lanes import Lanes
from wistro.bus.redis_keys import RedisKeys
from wistro.bus.redis_scripts import SCRIPTS, CommitEncoder
from wistro.processes import worker_name
from wistro.urls import public_url

log = logging.getLogger("wistro.bus")
T = TypeVar("T")

BLOCK_MS = 1000  # the reader's longest wait in Redis
ENDED_BLOCK_MS = 5000  # the ended-runs reader's
BACKOFF_S = (0.1, 2.0)


def cancelled_meanwhile() -> None:
    """Raise CancelledError if this task was cancelled during a Redis call that returned anyway
    (redis-py can swallow a cancellation that lands while it reads a reply)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def as_text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


_instances = itertools.count()


class RedisBusBase(EventBus):
    """The state and plumbing of ``RedisBus`` (``redis``), which its consumer (``redis_consumer``)
    and ended-runs (``redis_ended``) sides share."""

    def __init__(
        self,
        url: str,
        prefix: str,
        steps: Callable[[], list[str] | None] | list[str] | None = None,
        visibility_timeout_s: float = 30.0,
        max_deliveries: int = 10,
        batch: int = 256,
    ) -> None:
        if not prefix:
            raise ValueError("the redis bus needs a non-empty key prefix")
        self.url = url
        self.public_url = public_url(url)
        self.prefix = prefix
        self._steps_source = steps
        self.consume = steps is not None  # False: publish only (this process takes nothing)
        self.visibility_timeout_s = visibility_timeout_s
        self.max_deliveries = max_deliveries
        self.batch = batch
        n = next(_instances)
        # One consumer per process; a second bus in the same process is another consumer.
        self.me = worker_name() + (f"/{n}" if n else "")
        self._keys = RedisKeys(prefix)
        self._encoder = CommitEncoder(prefix, self.me, self._keys.stream)
        self._ops: list[tuple[Any, ...]] = []
        self._appended = 0  # operations buffered, ever
        self._committed = 0  # operations committed, ever
        self._unsent = 0  # publishes buffered and not committed yet
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        # The commit sent and not known to be applied: (operations, publishes, argv, delayed).
        self._inflight: tuple[int, int, list[Any], bool] | None = None
        self._waiting: set[str] = set()  # runs opened here: their end wakes someone here
        # runs this process ended and recorded, to announce once the awaitable (their ends are
        # in the trace store) resolves
        self._ending: list[tuple[Awaitable[None] | None, list[RunEnded]]] = []
        self._hosted: list[tuple[str, str]] = []  # (step, stream) consumed here
        self._held: dict[tuple[bytes, bytes], bytes] = {}  # read here, not acknowledged: body
        self._limits: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: aioredis.Redis | None = None
        self._redis_loop: asyncio.AbstractEventLoop | None = None
        self._concurrency_of: ConcurrencyOf = lambda step: 16
        self._unblockers: set[asyncio.Task[None]] = set()
        self._stopping: set[asyncio.Task[None]] = set()  # cancelled by abandon(), not done yet
        self._reader: aioredis.Redis | None = None
        self._ended_reader: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._lanes: Lanes | None = None
        self._hooks: BusHooks | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kick_commit = asyncio.Event()
        self._kick_mover = asyncio.Event()
        self._kick_announce = asyncio.Event()
        self._ended_ready = asyncio.Event()
        self._down = False  # Redis unreachable: said once
        self._reader_id: int | None = None
        self._blocked_on: set[str] | None = None  # full steps while the reader blocks
        self._unblocking = False
        self._read_no = 0  # reads sent, ever
        self._started_ms = 0
        self._read_at = 0.0  # when the last one was sent (loop time)

    # -- tasks and connections ---------------------------------------------------------------

    def _spawn(self, name: str, loop_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._loop is not None
        self._tasks[name] = self._loop.create_task(
            self._keep(name, loop_fn), name=f"wistro-redis-bus-{name}"
        )

    async def _keep(self, name: str, loop_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run one of the bus's loops; one that fails on something other than Redis (a bug, a
        hook that raised) says so and starts again, so the bus never stops silently."""
        while True:
            try:
                await loop_fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                cancelled_meanwhile()  # it failed while being cancelled: it stops
                if self._redis is None:
                    return  # closed meanwhile
                log.exception(
                    "redis bus at %s: its %s task failed; restarting it", self.public_url, name
                )
                await asyncio.sleep(BACKOFF_S[1])
                if self._redis is None:
                    return

    def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Clients of this event loop (connections belong to the loop that opened them)."""

        def client(single: bool, read_timeout: float) -> aioredis.Redis:
            return aioredis.Redis.from_url(
                self.url,
                single_connection_client=single,
                socket_connect_timeout=5.0,
                socket_timeout=read_timeout,
                socket_keepalive=True,
                # One more try on a fresh connection (a pooled one Redis closed); beyond that the
                # bus's own backoff takes over, and says so.
                retry=Retry(NoBackoff(), 1),
            )

        self._redis = client(False, 10.0)
        self._reader = client(True, BLOCK_MS / 1000 + 10.0)
        self._ended_reader = client(True, ENDED_BLOCK_MS / 1000 + 10.0)
        self._redis_loop = loop
        self._scripts = {name: self._redis.register_script(text) for name, text in SCRIPTS.items()}

    async def _oneshot(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run ``fn`` with this loop's client, or (a bus never started, as in the CLI) with a
        client of its own, closed after."""
        if self._redis is not None and self._redis_loop is asyncio.get_running_loop():
            return await fn(self._redis)
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=5.0, socket_timeout=10.0)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    # -- Redis unreachable -------------------------------------------------------------------

    def _trouble(self, what: str, e: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "redis bus at %s: %s failed (%s: %s); retrying",
                self.public_url,
                what,
                type(e).__name__,
                str(e).strip() or "no reason given",
            )

    def _fine(self) -> None:
        if self._down:
            self._down = False
            log.info("redis bus at %s: Redis answers again", self.public_url)

    async def _retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` until it works, with a growing pause while Redis fails."""
        pause = BACKOFF_S[0]
        while True:
            try:
                result = await fn()
            except RedisError as e:
                cancelled_meanwhile()
                self._trouble(what, e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            cancelled_meanwhile()
            self._fine()
            return result

    # -- the buffer --------------------------------------------------------------------------

    def _append(self, op: tuple[Any, ...]) -> None:
        """Buffer ``op`` (``redis_scripts``: PUB, ACK ...) for the next commit."""
        self._ops.append(op)
        self._appended += 1
        self._kick_commit.set()
