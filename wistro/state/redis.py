"""Redis state: each group is one Redis hash, shared by every process that uses the same prefix.

Key layout, under the prefix (``redis.prefix``, default ``wistro:<project>:<environment>``):

* ``<prefix>:state:<group>``: a hash, one field per key, the value's JSON text (UTF-8);
* ``<prefix>:state-groups``: a set of the group names that have at least one key. It changes
  in the same transaction (or script) as the hash, so ``groups()`` reads one set, never a
  ``SCAN`` of the whole database, and never sees another prefix's groups.

``update`` is optimistic: ``WATCH`` the hash, ``HGET``, run ``fn`` here, then
``MULTI``/``HSET``/``EXEC``; when another client wrote the hash in between, ``EXEC`` does
nothing and the whole read-modify-write runs again (a jittered backoff between attempts, at
most :data:`MAX_CONFLICTS` of them). Each attempt holds one pooled connection of its own for
the ``WATCH``. ``WATCH`` watches the whole hash, so any write to the group makes an update try
again; updates of one group from this process therefore queue on an ``asyncio.Lock`` first
rather than overtake one another (300 concurrent updates of 300 keys of one group ran ``fn``
some 9,000 times without it, in one measurement; 300 times with it). ``WATCH`` is what keeps
other processes, other adapters, and this adapter's own ``set``/``delete``/``clear`` out.

Redis that cannot be reached, or that does not answer within the socket timeout, fails the
operation with one line naming the URL (without its password) and the group and key. The
connection pool reconnects on its own once Redis is back; a command that fails on a dead
pooled connection is retried on a fresh one. A connection lost while ``EXEC`` was on its way is
the one case that is not retried: Redis may have applied it, and running ``fn`` again could
apply the change twice, so ``update`` says so instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import FullJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    RedisError,
    WatchError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from wistro.errors import StateError
from wistro.state.base import StateAdapter, check_name
from wistro.urls import public_url

MAX_CONFLICTS = 100  # attempts of one update whose EXEC found the hash changed, then StateError
_BACKOFF_BASE_S, _BACKOFF_CAP_S = 0.0005, 0.02  # between conflicting attempts, jittered

# HDEL, and the group leaves the set of groups once its hash is empty: in one step, so that a
# concurrent HSET + SADD cannot come in between (it would leave a group that has keys unlisted).
_DELETE = """
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 0
"""


def _reason(e: BaseException) -> str:
    """The operating system's words for a connection failure (``Connection refused``), else the
    client's message."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)  # asyncio's own words name the address again
        seen = seen.__cause__ or seen.__context__
    return str(e).strip() or type(e).__name__


def _text(raw: bytes | str, where: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StateError(f"{where}: the stored value is not UTF-8 text ({e.reason})") from None


class _Ambiguous(Exception):
    """The connection went away while ``EXEC`` was sent: it may have been applied."""


class _GroupLocks:
    """One ``asyncio.Lock`` per group while anyone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name) or (asyncio.Lock(), 0)
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)


class RedisState(StateAdapter):
    """State in Redis hashes under ``prefix``; safe to share between processes and machines."""

    name = "redis"

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        timeout_s: float = 5.0,
        max_connections: int = 64,
        max_conflicts: int = MAX_CONFLICTS,
    ) -> None:
        if not prefix:
            raise StateError("the redis state prefix must be a non-empty string", field="prefix")
        self.url = url
        self.public_url = public_url(url)
        self.prefix = prefix
        self.timeout_s = timeout_s
        # Every operation (each attempt of an update) gives up after this: a connection attempt
        # or a read that times out, and one more on a fresh connection, fit in.
        self.deadline_s = 2 * timeout_s
        self.max_connections = max_connections
        self.max_conflicts = max_conflicts
        self._groups_key = f"{prefix}:state-groups"
        # The client's connections belong to the event loop that opened them: a new loop (a new
        # ``asyncio.run``, as the engine allows) gets a client of its own.
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._locks = _GroupLocks()
        self._delete_script: AsyncScript | None = None
        self._new_client()  # an invalid URL fails here, not at the first operation

    # ------------------------------------------------------------ the client
    def _new_client(self) -> aioredis.Redis:
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=None,  # waiting for a free connection: the operation's deadline
                socket_connect_timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
                socket_keepalive=True,
                health_check_interval=30,  # PING a connection idle this long before reusing it
                # A command that fails on a dead connection (Redis restarted, a timeout) runs
                # again on a new one, twice at most; WATCHed commands are never retried this way.
                retry=Retry(
                    FullJitterBackoff(cap=0.5, base=0.05),
                    retries=2,
                    supported_errors=(RedisConnectionError, RedisTimeoutError),
                ),
            )
        except ValueError as e:
            raise StateError(
                f"invalid redis URL {self.public_url!r}: {e}",
                hint="redis://[[user]:password@]host[:port][/db], rediss://..., or unix://path",
            ) from None
        client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        self._client = client
        self._delete_script = client.register_script(_DELETE)
        return client

    def _redis(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None or self._client is None:
                self._new_client()  # the old client's connections died with their loop
                self._locks = _GroupLocks()
            self._loop = loop
        assert self._client is not None
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        loop, self._loop = self._loop, None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()
        # A later operation opens a new client: close() ends the connections, not the adapter.

    # ------------------------------------------------------------ names and errors
    def _hash(self, group: str) -> str:
        return f"{self.prefix}:state:{group}"

    def where(self, group: str, key: str | None = None) -> str:
        place = f"{self.public_url} {self._hash(group)}"
        return place if key is None else f"{place} field {key!r}"

    def _what(self, group: str | None, key: str | None) -> str:
        if group is None:
            return f"groups under {self.prefix!r}"
        return f"group {group!r}" + (f", key {key!r}" if key is not None else "")

    def _failure(self, e: RedisError, group: str | None, key: str | None) -> StateError:
        at, what = f"redis state at {self.public_url}", self._what(group, key)
        if isinstance(e, AuthenticationError):
            return StateError(f"{at} refused the credentials ({what}): {e}")
        if isinstance(e, RedisTimeoutError):
            return StateError(
                f"{at} did not answer within {self.timeout_s:g}s ({what}): {_reason(e)}"
            )
        if isinstance(e, RedisConnectionError):
            return StateError(f"{at} is unreachable ({what}): {_reason(e)}")
        return StateError(f"{at} failed ({what}): {type(e).__name__}: {e}")

    def _no_answer(self, group: str | None, key: str | None) -> StateError:
        return StateError(
            f"redis state at {self.public_url} did not answer within {self.deadline_s:g}s "
            f"({self._what(group, key)})"
        )

    @contextlib.asynccontextmanager
    async def _guard(
        self, group: str | None, key: str | None = None, deadline: bool = True
    ) -> AsyncIterator[None]:
        """Redis's errors, and the operation's deadline, as one-line ``StateError``s."""
        try:
            async with asyncio.timeout(self.deadline_s if deadline else None) as cm:
                yield
        except TimeoutError:
            if cm.expired():
                raise self._no_answer(group, key) from None
            raise
        except RedisError as e:
            raise self._failure(e, group, key) from None
        except _Ambiguous as e:
            raise StateError(
                f"redis state at {self.public_url} lost the connection while committing an "
                f"update ({self._what(group, key)}): it may or may not have been applied; "
                f"{e}"
            ) from None

    # ------------------------------------------------------------ the port
    async def get(self, group: str, key: str) -> str | None:
        check_name("group", group)
        check_name("key", key)
        async with self._guard(group, key):
            raw = await self._redis().hget(self._hash(group), key)
        return None if raw is None else _text(raw, self.where(group, key))

    async def set(self, group: str, key: str, value_json: str) -> None:
        check_name("group", group)
        check_name("key", key)
        async with self._guard(group, key), self._redis().pipeline(transaction=True) as pipe:
            pipe.hset(self._hash(group), key, value_json)
            pipe.sadd(self._groups_key, group)
            await pipe.execute()

    async def update(self, group: str, key: str, fn: Callable[[str | None], str]) -> str:
        check_name("group", group)
        check_name("key", key)
        # Waiting for this process's other updates of the group has no deadline; each attempt has.
        async with self._locks.hold(group), self._guard(group, key, deadline=False):
            return await self._update(group, key, fn)

    async def _update(self, group: str, key: str, fn: Callable[[str | None], str]) -> str:
        name, where = self._hash(group), self.where(group, key)
        client = self._redis()
        conflicts = 0
        while True:
            committing = False
            try:
                async with (
                    asyncio.timeout(self.deadline_s) as cm,
                    client.pipeline(transaction=True) as pipe,
                ):
                    try:
                        # WATCH and HGET on the pipeline's own connection, held until EXEC.
                        await pipe.watch(name)
                        raw = await pipe.hget(name, key)
                        read = True
                    except WatchError:
                        # The connection died after WATCH (redis-py says so with a WatchError):
                        # nothing was written; start again on a new connection.
                        read = False
                    if read:
                        # When fn raises, leaving the ``async with`` sends UNWATCH: nothing
                        # is written.
                        new = fn(None if raw is None else _text(raw, where))
                        pipe.multi()
                        pipe.hset(name, key, new)
                        pipe.sadd(self._groups_key, group)
                        committing = True
                        try:
                            await pipe.execute()
                            return new
                        except WatchError as e:
                            cause = e.__cause__ or e.__context__
                            if isinstance(cause, RedisConnectionError | RedisTimeoutError):
                                raise _Ambiguous(_reason(cause)) from None
                            # else another client wrote the hash since WATCH: try again
                        except (RedisConnectionError, RedisTimeoutError) as e:
                            raise _Ambiguous(_reason(e)) from None
            except TimeoutError:
                if not cm.expired():
                    raise  # fn's own
                if committing:
                    raise _Ambiguous(f"no answer within {self.deadline_s:g}s") from None
                raise self._no_answer(group, key) from None
            conflicts += 1
            if conflicts >= self.max_conflicts:
                raise StateError(
                    f"redis state at {self.public_url}: update of group {group!r}, key "
                    f"{key!r} gave up after {conflicts} attempts: another client changed "
                    "the group each time between the read and the write"
                )
            await asyncio.sleep(
                random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** min(conflicts, 8)))
            )

    async def delete(self, group: str, key: str) -> None:
        check_name("group", group)
        check_name("key", key)
        async with self._guard(group, key):
            self._redis()
            assert self._delete_script is not None
            await self._delete_script(keys=[self._hash(group), self._groups_key], args=[key, group])

    async def get_group(self, group: str) -> dict[str, str]:
        check_name("group", group)
        async with self._guard(group):
            items = await self._redis().hgetall(self._hash(group))
        where = self.where(group)
        return {_text(k, where): _text(v, where) for k, v in sorted(items.items())}

    async def clear(self, group: str) -> None:
        check_name("group", group)
        async with self._guard(group), self._redis().pipeline(transaction=True) as pipe:
            pipe.delete(self._hash(group))
            pipe.srem(self._groups_key, group)
            await pipe.execute()

    async def groups(self) -> list[str]:
        async with self._guard(None):
            client = self._redis()
            members = sorted(
                _text(m, self._groups_key) for m in await client.smembers(self._groups_key)
            )
            if not members:
                return []
            # The set follows the hashes; a hash removed behind Wistro's back (DEL by hand,
            # eviction) still never shows as a group.
            async with client.pipeline(transaction=False) as pipe:
                for group in members:
                    pipe.exists(self._hash(group))
                found = await pipe.execute()
        return [g for g, n in zip(members, found, strict=True) if n]
