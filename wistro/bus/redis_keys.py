"""The Redis bus's keys: every one under ``prefix``, so that two projects or environments on one
Redis never meet (the Lua scripts of ``redis_scripts`` build the same names from the prefix):

* ``{prefix}:q:{step}@{version}``: a stream per subscribing step and version, one entry per delivery (field ``d``: the
  delivery's JSON), with one consumer group ``workers``; each process reads as its own consumer
  (``host:pid``). A stream per *step*, not per topic: a worker hosting N steps waits on all of
  them with one blocking ``XREADGROUP GROUP workers <me> COUNT n BLOCK ms STREAMS q:A q:B ...
  > > ...``, where a stream per topic with a group per step would need N blocking calls (a group
  belongs to one stream). Steps fan out because ``publish`` writes one entry per subscribing step;
  replicas of a step compete in its group.
* ``{prefix}:delayed``: a sorted set of the deliveries waiting for their time (retries with
  backoff), score = when they are due, member = a unique id and the delivery's JSON. A mover task
  in every process moves the due ones into their streams (a script: ``ZRANGEBYSCORE`` with a
  limit, ``XADD``, ``ZREM``), then sleeps until the next is due, at most a second: an idle
  cluster does not poll faster than that.
* ``{prefix}:run:{trace_id}``: the run ledger, a hash per run in flight (trigger, topic, start,
  origin, pending, events, errors). ``open_run`` sets it and adds its holds to ``pending``; each
  delivery published adds one, each one acknowledged takes one away, ``release`` takes a hold
  away, ``note`` counts events and errors.
* ``{prefix}:ending`` (a sorted set of runs whose pending reached 0 and that are not announced
  yet) and ``{prefix}:ended`` (a stream of ended runs, ``MAXLEN ~ 100000``; ``broadcast``
  messages, activate/deactivate, travel on it too, in order with the rest).
* ``{prefix}:workers`` (a hash: each worker's registration, ``wistro versions``) and
  ``{prefix}:traffic`` (the split set with ``wistro traffic set``).
* ``{prefix}:claim:{key}`` (``claim``: ``SET NX`` with a lifetime, a cron tick fires once) and
  ``{prefix}:commit:{committer}`` (the number of a process's last commit applied, for ten minutes).
"""

from __future__ import annotations

GROUP = "workers"  # the consumer group of every stream (the scripts name it too)


class RedisKeys:
    """The names of one bus's keys (``prefix``: ``redis.prefix``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ending = f"{prefix}:ending"
        self.ended = f"{prefix}:ended"
        self.workers = f"{prefix}:workers"
        self.traffic = f"{prefix}:traffic"
        self._streams: dict[str, str] = {}  # step -> its stream

    def stream(self, step: str, version: str | None = None) -> str:
        """The stream of a step's deliveries of ``version`` (each version's workers read their
        own: ``q:{step}@{version}``), or of unversioned ones (``q:{step}``)."""
        name = step if version is None else f"{step}@{version}"
        key = self._streams.get(name)
        if key is None:
            key = self._streams[name] = f"{self.prefix}:q:{name}"
        return key

    def run(self, trace_id: str) -> str:
        return f"{self.prefix}:run:{trace_id}"

    def claim(self, key: str) -> str:
        return f"{self.prefix}:claim:{key}"
