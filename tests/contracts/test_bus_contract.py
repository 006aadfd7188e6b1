"""Every event bus: deliveries are values, each published one runs once, per-step concurrency
holds, delays are honoured, and stopping drops what is queued or scheduled."""

from __future__ import annotations

import asyncio
import time

from wistro.bus import Delivery, EventBus
from wistro.tracing.records import EventRecord


def delivery(step: str = "S", n: int = 0, **kw: object) -> Delivery:
    event = EventRecord(f"e{n}", "t" * 32, "topic.x", f'{{"n":{n}}}', "emit", None, 1.5)
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

    bus.start(deliver, lambda step: {"A": 2, "B": 5}[step])
    for i in range(60):
        bus.publish(delivery(step="A" if i % 2 else "B", n=i))
    async with asyncio.timeout(30):
        while done < 60:
            await asyncio.sleep(0.01)
    assert peak == {"A": 2, "B": 5}


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


async def test_abandon_and_close_drop_what_is_queued_and_scheduled(bus: EventBus) -> None:
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
    assert bus.pending() == 5  # one is running, four queued, one scheduled
    bus.abandon()
    gate.set()
    await asyncio.sleep(0.1)
    assert ran == [] and bus.pending() == 0
