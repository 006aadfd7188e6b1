"""Every event bus: deliveries are values, each published one runs once, per-step concurrency
holds, delays are honoured; stopping drops what is queued or scheduled in memory, and leaves it
for the next process on a shared bus. Shared buses (local, redis) also: acknowledge what was
delivered, show one process what another published, keep what ``flush`` accepted, keep the run
ledger (a run ends once, wherever its last delivery settles), take back a dead worker's
deliveries after the visibility timeout, and dead-letter a delivery every worker died on."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

from wistro.bus import BusHooks, Deliver, Delivery, EventBus, RunEnded, RunOpened
from wistro.tracing.records import EventRecord


def delivery(step: str = "S", n: int = 0, trace_id: str = "t" * 32, **kw: object) -> Delivery:
    event = EventRecord(f"e{n}", trace_id, "topic.x", f'{{"n":{n}}}', "emit", None, 1.5)
    return Delivery(step, event, **kw)  # type: ignore[arg-type]


def test_a_delivery_round_trips_through_json_unchanged() -> None:
    d = delivery(
        n=7, attempt=3, not_before=123.25, version="abc", dead_letter_id="d1", payload={"n": 7}
    )
    back = Delivery.from_json(d.to_json())
    assert back == d  # the in-process payload cache is not part of the value
    assert not back.has_payload and back.event.data_json == '{"n":7}'
    assert Delivery.from_json(back.to_json()).to_dict() == d.to_dict()


async def test_every_published_delivery_runs_once(bus: EventBus) -> None:
    seen: list[str] = []

    async def deliver(d: Delivery) -> None:
        await asyncio.sleep(0)
        seen.append(d.event.id)

    bus.start(deliver, lambda step: 8)
    for i in range(500):
        bus.publish(delivery(step=f"S{i % 5}", n=i))
    async with asyncio.timeout(30):
        while len(seen) < 500:
            await asyncio.sleep(0.01)
    assert sorted(seen) == sorted(f"e{i}" for i in range(500))
    assert bus.pending() == 0


async def test_per_step_concurrency_is_a_limit(bus: EventBus) -> None:
    running: dict[str, int] = {"A": 0, "B": 0}
    peak: dict[str, int] = {"A": 0, "B": 0}
    done = 0

    async def deliver(d: Delivery) -> None:
        nonlocal done
        running[d.step] += 1
        peak[d.step] = max(peak[d.step], running[d.step])
        await asyncio.sleep(0.005)
        running[d.step] -= 1
        done += 1

    bus.start(deliver, lambda step: {"A": 2, "B": 5}.get(step, 1))
    for i in range(60):
        bus.publish(delivery(step="A" if i % 2 else "B", n=i))
    async with asyncio.timeout(30):
        while done < 60:
            await asyncio.sleep(0.01)
    assert peak == {"A": 2, "B": 5}


async def test_a_waiting_handler_never_holds_up_another_delivery(bus: EventBus) -> None:
    """The memory bus runs a step's deliveries one after another in one worker while they
    never wait; one that waits must leave the rest to other workers. Here 200 deliveries of A
    each wait for the B delivered after it, and every B is published while the As wait."""
    gates = {i: asyncio.Event() for i in range(200)}
    done: list[str] = []

    async def deliver(d: Delivery) -> None:
        n = int(d.event.id[1:])
        if d.step == "A":
            await gates[n].wait()
        else:
            gates[n].set()
        done.append(d.step)

    bus.start(deliver, lambda step: 200)
    for i in range(200):
        bus.publish(delivery(step="A", n=i))
    await asyncio.sleep(0.05)
    for i in range(200):
        bus.publish(delivery(step="B", n=i))
    async with asyncio.timeout(30):
        while len(done) < 400:
            await asyncio.sleep(0.01)
    assert done.count("A") == done.count("B") == 200


async def test_deliveries_published_by_a_running_delivery_start_while_it_waits(
    bus: EventBus,
) -> None:
    """A handler that publishes, then waits for what it published to have run (a pattern of
    emit-and-wait): the published delivery must start although its publisher still runs."""
    ran: dict[str, asyncio.Event] = {}
    finished: list[str] = []

    async def deliver(d: Delivery) -> None:
        if d.step == "A":
            ran[d.event.id] = asyncio.Event()
            bus.publish(delivery(step="B", n=int(d.event.id[1:]), trace_id=d.event.trace_id))
            await ran[d.event.id].wait()
        else:
            ran[d.event.id].set()
        finished.append(d.step)

    bus.start(deliver, lambda step: 16)
    for i in range(300):
        bus.publish(delivery(step="A", n=i))
    async with asyncio.timeout(30):
        while len(finished) < 600:
            await asyncio.sleep(0.01)
    assert finished.count("A") == 300


async def test_a_delayed_delivery_waits_its_turn(bus: EventBus) -> None:
    order: list[str] = []

    async def deliver(d: Delivery) -> None:
        order.append(d.event.id)

    bus.start(deliver, lambda step: 4)
    started = time.monotonic()
    bus.publish(delivery(n=1), delay=0.2)
    bus.publish(delivery(n=2))
    assert bus.pending() >= 1
    async with asyncio.timeout(10):
        while len(order) < 2:
            await asyncio.sleep(0.01)
    assert order == ["e2", "e1"]
    assert time.monotonic() - started >= 0.2


async def test_abandon_stops_at_once(bus: EventBus) -> None:
    """In memory what is queued or scheduled is dropped; a shared bus leaves it where it is for
    the next process (test_what_is_queued_stays_for_the_next_process)."""
    ran: list[str] = []
    gate = asyncio.Event()

    async def deliver(d: Delivery) -> None:
        await gate.wait()
        ran.append(d.event.id)

    bus.start(deliver, lambda step: 1)
    for i in range(5):
        bus.publish(delivery(n=i))
    bus.publish(delivery(n=99), delay=0.05)
    await asyncio.sleep(0.01)
    if not bus.shared:
        assert bus.pending() == 5  # one is running, four queued, one scheduled
    bus.abandon()
    gate.set()
    await asyncio.sleep(0.1)
    assert ran == [] and bus.pending() == 0


# -- shared buses ------------------------------------------------------------------------------


class Hooks:
    """What a shared bus calls back, recorded."""

    def __init__(self) -> None:
        self.ended: list[RunEnded] = []
        self.finished: list[RunEnded] = []
        self.poisoned: list[tuple[str, int]] = []
        self.finished_event = asyncio.Event()

    async def _ended(self, runs: list[RunEnded]) -> None:
        self.ended += runs

    def _finished(self, run: RunEnded) -> None:
        self.finished.append(run)
        self.finished_event.set()

    async def _poisoned(self, d: Delivery, tries: int) -> None:
        self.poisoned.append((d.event.id, tries))

    def hooks(self) -> BusHooks:
        return BusHooks(self._ended, self._finished, self._poisoned)


async def nothing(d: Delivery) -> None:
    return None


def counting(seen: list[str]) -> Deliver:
    async def deliver(d: Delivery) -> None:
        seen.append(d.event.id)

    return deliver


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_delivery_that_ran_is_acknowledged(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    first = make_shared_bus(visibility_timeout_s=0.5)
    seen: list[str] = []
    first.start(counting(seen), lambda step: 4)
    for i in range(10):
        first.publish(delivery(n=i))
    await until(lambda: len(seen) == 10)
    await first.aclose()  # the acknowledgements are committed
    again: list[str] = []
    second = make_shared_bus(visibility_timeout_s=0.5)
    second.start(counting(again), lambda step: 4)
    await asyncio.sleep(1.5)  # past the visibility timeout: nothing comes back
    assert sorted(seen) == sorted(f"e{i}" for i in range(10)) and again == []


async def test_another_process_sees_what_one_published(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    publisher = make_shared_bus(consume=False)
    publisher.start(nothing, lambda step: 4)
    for i in range(20):
        publisher.publish(delivery(step=f"S{i % 2}", n=i))
    publisher.publish(delivery(n=100), delay=0.2)
    await publisher.flush()
    seen: list[str] = []
    worker = make_shared_bus()
    worker.start(counting(seen), lambda step: 4)
    await until(lambda: len(seen) == 21)
    assert sorted(seen) == sorted([f"e{i}" for i in range(20)] + ["e100"])


async def test_what_flush_accepted_survives_its_process(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    publisher = make_shared_bus(consume=False)
    publisher.start(nothing, lambda step: 4)
    for i in range(50):
        publisher.publish(delivery(n=i))
    async with asyncio.timeout(10):
        await publisher.flush()
    assert publisher.pending() == 0
    publisher.abandon()  # the process dies: nothing more is written by it
    seen: list[str] = []
    worker = make_shared_bus()
    worker.start(counting(seen), lambda step: 8)
    await until(lambda: len(seen) == 50)
    assert sorted(seen) == sorted(f"e{i}" for i in range(50))


async def test_what_is_queued_stays_for_the_next_process(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    gate = asyncio.Event()
    ran: list[str] = []

    async def stuck(d: Delivery) -> None:
        ran.append(d.event.id)
        await gate.wait()

    first = make_shared_bus(visibility_timeout_s=0.5)
    first.start(stuck, lambda step: 1)
    for i in range(5):
        first.publish(delivery(n=i))
    first.publish(delivery(n=99), delay=0.05)
    await until(lambda: len(ran) == 1)
    first.abandon()
    seen: list[str] = []
    second = make_shared_bus(visibility_timeout_s=0.5)
    second.start(counting(seen), lambda step: 4)
    # Queued and scheduled at once; the one that was running once its visibility timeout ends.
    await until(lambda: len(seen) >= 6)
    assert sorted(seen) == sorted([*(f"e{i}" for i in range(5)), "e99"])
    assert len(ran) == 1


async def test_a_run_ends_once_wherever_its_last_delivery_settles(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    """The origin (publish only) opens a run with one hold (an api call) and publishes 20
    deliveries to S; two workers share them, each publishing a delivery to T; the run ends once
    the hold is released and all 40 are acknowledged: hooks.ended once, in whichever process
    settled the last one, then hooks.finished in the origin only."""
    trace = "r" * 32
    origin_hooks, hooks_a, hooks_b = Hooks(), Hooks(), Hooks()
    origin = make_shared_bus(consume=False)
    origin.start(nothing, lambda step: 4, origin_hooks.hooks())
    workers = [make_shared_bus(), make_shared_bus()]
    ran: list[str] = []

    def worker_of(bus: EventBus) -> Deliver:
        async def deliver(d: Delivery) -> None:
            ran.append(d.event.id)
            await asyncio.sleep(0.001)
            bus.note(d.event.trace_id, events=1, errors=1 if d.event.id == "e3" else 0)
            if d.step == "S":
                bus.publish(delivery(step="T", n=int(d.event.id[1:]) + 1000, trace_id=trace))

        return deliver

    for bus, hooks in zip(workers, (hooks_a, hooks_b), strict=True):
        bus.start(worker_of(bus), lambda step: 4, hooks.hooks())
    me = f"{socket.gethostname()}:{os.getpid()}"  # the engine's worker name
    origin.open_run(RunOpened(trace, "api", "topic.x", 1000.0, me), holds=1)
    origin.note(trace, events=1)
    for i in range(20):
        origin.publish(delivery(n=i, trace_id=trace))
    await origin.flush()
    await until(lambda: len(ran) == 40)
    await asyncio.sleep(0.3)
    assert not origin_hooks.finished  # the hold is still there
    origin.release(trace)
    await origin.flush()
    async with asyncio.timeout(10):
        await origin_hooks.finished_event.wait()
    await asyncio.sleep(0.3)  # nothing more comes
    ended = origin_hooks.ended + hooks_a.ended + hooks_b.ended
    assert len(ended) == 1
    run = ended[0]
    assert (run.trace_id, run.trigger, run.topic, run.start, run.origin) == (
        trace, "api", "topic.x", 1000.0, me,
    )  # fmt: skip
    assert (run.n_events, run.n_errors) == (41, 1) and run.end >= run.start
    assert origin_hooks.finished == [run]
    assert not hooks_a.finished and not hooks_b.finished  # not their run


async def test_the_bus_owes_a_run_until_it_ends(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    trace, unknown = "o" * 32, "u" * 32
    hooks, seen = Hooks(), []
    bus = make_shared_bus()
    bus.start(counting(seen), lambda step: 4, hooks.hooks())
    me = f"{socket.gethostname()}:{os.getpid()}"
    bus.open_run(RunOpened(trace, "api", "topic.x", 1000.0, me), holds=1)
    bus.publish(delivery(n=1, trace_id=trace))
    await bus.flush()
    assert await bus.owed([trace, unknown]) == {trace}
    await until(lambda: bool(seen))
    await asyncio.sleep(0.1)
    assert await bus.owed([trace]) == {trace}  # the hold is still there
    bus.release(trace)
    await bus.flush()
    async with asyncio.timeout(10):
        await hooks.finished_event.wait()
        while await bus.owed([trace, unknown]):  # forgotten once its end is announced
            await asyncio.sleep(0.01)


async def test_a_dead_workers_deliveries_are_taken_back(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    started: list[str] = []

    async def dies(d: Delivery) -> None:
        started.append(d.event.id)
        await asyncio.Event().wait()  # never returns: the process dies in it

    first = make_shared_bus(visibility_timeout_s=0.5)
    first.start(dies, lambda step: 3)
    for i in range(6):
        first.publish(delivery(n=i))
    await until(lambda: len(started) == 3)
    first.abandon()  # killed: three taken, never acknowledged
    seen: list[str] = []
    second = make_shared_bus(visibility_timeout_s=0.5)
    second.start(counting(seen), lambda step: 4)
    await until(lambda: len(seen) >= 6, timeout=10)
    assert sorted(seen) == sorted(f"e{i}" for i in range(6))
    assert set(started) <= set(seen)


async def test_a_delivery_every_worker_died_on_is_poison(
    make_shared_bus: Callable[..., EventBus],
) -> None:
    """max_deliveries=2: the poison delivery kills two workers; the third hands it to
    hooks.poisoned (delivered twice) and acknowledges it; the rest of the stream flows."""
    seen: list[str] = []

    def worker(name: str) -> Deliver:
        async def deliver(d: Delivery) -> None:
            seen.append(f"{name}:{d.event.id}")
            if d.event.id == "e0":
                await asyncio.Event().wait()  # dies on it

        return deliver

    hooks = Hooks()
    for name in ("w1", "w2"):
        bus = make_shared_bus(visibility_timeout_s=0.4, max_deliveries=2)
        if name == "w1":
            for i in range(4):
                bus.publish(delivery(n=i))
        bus.start(worker(name), lambda step: 1)
        await until(lambda name=name: f"{name}:e0" in seen, timeout=10)
        bus.abandon()
    last = make_shared_bus(visibility_timeout_s=0.4, max_deliveries=2)
    last.start(worker("w3"), lambda step: 1, hooks.hooks())
    await until(lambda: bool(hooks.poisoned), timeout=10)
    await until(lambda: {s.split(":")[1] for s in seen} >= {"e1", "e2", "e3"}, timeout=10)
    assert hooks.poisoned == [("e0", 2)]
    assert "w3:e0" not in seen
