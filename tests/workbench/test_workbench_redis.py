"""The Workbench on a ``wistro dev`` whose bus (and so its trace store) is Redis: runs, traces,
logs and dead letters come from Redis, and a dead letter is replayed."""

from __future__ import annotations

from pathlib import Path

from redis_support import RedisServer
from workbench_support import ORDER, Dev, make_shop


def test_runs_and_dead_letters_on_the_redis_bus(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        extra = f"redis: {{url: '{redis.url}'}}\nbus: {{adapter: redis}}\n"
        dev = Dev(make_shop(tmp_path / "shop", extra_config=extra))
        try:
            project = dev.op("project")
            assert project["bus"] == "redis" and project["mode"] == "dev"
            ok = dev.op("emit", topic="order.placed", data=ORDER)
            failed = dev.op("emit", topic="job.started", data={"job": "r"})
            assert ok["status"] == "ok" and failed["status"] == "error"
            runs = dev.op("runs")["runs"]
            assert [r["trace_id"] for r in runs[:2]] == [failed["trace_id"], ok["trace_id"]]
            assert runs[0]["steps"] == ["Flaky"] and "checkout" in runs[1]["flows"]
            assert [r["trace_id"] for r in dev.op("runs", status="error")["runs"]] == [
                failed["trace_id"]
            ]
            spans = dev.op("trace", trace_id=ok["trace_id"])["spans"]
            by_step = {s["step"]: s for s in spans}
            assert by_step["Send receipt"]["parent_id"] == by_step["Charge card"]["id"]
            assert any(log["message"] == "charging" for log in dev.op("logs")["logs"])
            letters = dev.op("dead_letters")["dead_letters"]
            assert [(d["step"], d["trace_id"]) for d in letters] == [("Flaky", failed["trace_id"])]
            assert redis.client().keys("*dead*"), "the dead letter is in Redis"
            (dev.root / "fail.flag").unlink()
            replayed = dev.op("replay", id=letters[0]["id"])
            assert replayed["status"] == "ok"
            assert dev.op("dead_letters")["dead_letters"] == []
        finally:
            dev.stop()
    finally:
        redis.stop()
