"""OpenTelemetry export for real: an OTLP/HTTP receiver on a loopback port (``http.server`` in a
thread, decoding the protobuf bodies the SDK's exporters send), projects with
``traces: {otlp: {endpoint: ...}}``, the HTTP trigger served by uvicorn on loopback with and
without a caller's W3C ``traceparent``, a collector that is down, and a project without the
config (OpenTelemetry is then never imported)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from projects import step, write_project

import wistro
from wistro.triggers.http import HttpServer, serve_http

SPAN_KIND_SERVER, SPAN_KIND_CONSUMER = 2, 5
STATUS_UNSET, STATUS_ERROR = 0, 2
SEVERITY_INFO = 9
PARENT_IS_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


# ---------------------------------------------------------------- the receiver


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class Receiver:
    """A minimal OTLP/HTTP collector: POST /v1/traces and /v1/logs, protobuf bodies."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.take(self.path, body, dict(self.headers))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append(path)
            self.headers = headers
            if path == "/v1/traces":
                for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                    resource = _attrs(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            self.spans.append(
                                {
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent": s.parent_span_id.hex(),
                                    "name": s.name,
                                    "kind": s.kind,
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "attrs": _attrs(s.attributes),
                                    "status": (s.status.code, s.status.message),
                                    "events": [(e.name, _attrs(e.attributes)) for e in s.events],
                                    "flags": s.flags,
                                    "resource": resource,
                                    "scope": ss.scope.name,
                                }
                            )
            elif path == "/v1/logs":
                for rl in ExportLogsServiceRequest.FromString(body).resource_logs:
                    resource = _attrs(rl.resource.attributes)
                    for sl in rl.scope_logs:
                        for r in sl.log_records:
                            self.logs.append(
                                {
                                    "trace_id": r.trace_id.hex(),
                                    "span_id": r.span_id.hex(),
                                    "severity": r.severity_number,
                                    "severity_text": r.severity_text,
                                    "body": _value(r.body),
                                    "attrs": _attrs(r.attributes),
                                    "time": r.time_unix_nano,
                                    "resource": resource,
                                }
                            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def otlp_yml(endpoint: str, name: str = "otel-test", extra: str = "") -> str:
    return f"name: {name}\ntraces:\n  otlp:\n    endpoint: {endpoint}\n{extra}"


async def flush(app: wistro.App) -> None:
    """Everything the runs did, exported: drain the engine, then close the exporter."""
    await app.drain()
    assert app.otel is not None
    await asyncio.to_thread(app.otel.close)


def by_trace(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        out.setdefault(s["trace_id"], []).append(s)
    return out


# ---------------------------------------------------------------- spans and logs of runs

CHAIN = {
    "src/a.step.py": step("A", ["t0"], ["t1"], "await ctx.emit('t1', data)"),
    "src/b.step.py": step(
        "B",
        ["t1"],
        ["t2"],
        "ctx.logger.info('hop', i=data['i'], tags=['x'], none=None)\nawait ctx.emit('t2', data)",
    ),
    "src/c.step.py": step("C", ["t2"]),
}


async def test_a_chain_run_200_times_concurrently_is_600_linked_spans(
    make_app: Callable[..., wistro.App], receiver: Receiver
) -> None:
    app = make_app({"wistro.yml": otlp_yml(receiver.url), **CHAIN})
    runs = await asyncio.gather(*(app.emit("t0", {"i": i}) for i in range(200)))
    assert all(r.record.status == "ok" for r in runs)
    await flush(app)

    assert len(receiver.spans) == 600
    traces = by_trace(receiver.spans)
    assert set(traces) == {r.trace_id for r in runs}  # no traceparent: Wistro's trace ids
    stored = {s.id: s for r in runs for s in r.span_records}
    for trace_id, spans in traces.items():
        by_step = {s["attrs"]["wistro.step"]: s for s in spans}
        assert sorted(by_step) == ["A", "B", "C"]
        a, b, c = by_step["A"], by_step["B"], by_step["C"]
        assert a["parent"] == "" and b["parent"] == a["span_id"] and c["parent"] == b["span_id"]
        assert [a["name"], b["name"], c["name"]] == ["t0 process", "t1 process", "t2 process"]
        for s, topic in ((a, "t0"), (b, "t1"), (c, "t2")):
            record = stored[s["span_id"]]  # the span id is Wistro's
            assert s["start"] == int(record.start * 1e9) and s["end"] == int(record.end * 1e9)
            assert s["kind"] == SPAN_KIND_CONSUMER
            assert s["status"] == (STATUS_UNSET, "")
            assert s["attrs"] == {
                "messaging.system": "wistro",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": record.step,
                "messaging.operation.type": "process",
                "messaging.message.id": record.event_id,
                "wistro.step": record.step,
                "wistro.attempt": 1,
                "wistro.worker": record.worker,
                "wistro.trace_id": trace_id,
            }
            assert s["resource"]["service.name"] == "otel-test"
            assert s["scope"] == "wistro"

    # On a loaded machine the loop watchdog may also report a stall it saw in a step (a
    # warning, exported like any log); every other log is one of the 200 "hop" lines.
    hops = [log for log in receiver.logs if log["body"] == "hop"]
    others = [log for log in receiver.logs if log["body"] != "hop"]
    assert all(str(o["body"]).startswith("the event loop was blocked for") for o in others), others
    assert len(hops) == 200
    b_spans = {s["trace_id"]: s["span_id"] for s in receiver.spans if s["name"] == "t1 process"}
    for log in hops:
        assert log["span_id"] == b_spans[log["trace_id"]]
        assert log["severity"] == SEVERITY_INFO and log["severity_text"] == "info"
        assert log["body"] == "hop"
        attrs = log["attrs"]
        assert isinstance(attrs.pop("i"), int)
        assert attrs == {
            "tags": '["x"]',
            "none": "null",
            "wistro.step": "B",
            "wistro.trace_id": log["trace_id"],
        }


async def test_a_failing_step_is_an_error_span_with_its_exception(
    make_app: Callable[..., wistro.App], receiver: Receiver
) -> None:
    app = make_app(
        {
            "wistro.yml": otlp_yml(receiver.url, extra="engine:\n  default_retries: 1\n"),
            "src/a.step.py": step("A", ["go"], ["boom"], "await ctx.emit('boom', data)"),
            "src/b.step.py": step(
                "Fails", ["boom"], extra="'retry_backoff_s': 0.01", body="raise ValueError('no')"
            ),
        }
    )
    run = await app.emit("go", {})
    assert run.record.status == "error"
    await flush(app)

    spans = {(s["attrs"]["wistro.step"], s["attrs"]["wistro.attempt"]): s for s in receiver.spans}
    assert sorted(spans) == [("A", 1), ("Fails", 1), ("Fails", 2)]
    assert spans["A", 1]["status"] == (STATUS_UNSET, "")
    for attempt in (1, 2):  # both attempts: children of the span that emitted the event
        failed = spans["Fails", attempt]
        assert failed["parent"] == spans["A", 1]["span_id"]
        assert failed["status"] == (STATUS_ERROR, "ValueError: no")
        assert failed["attrs"]["error.type"] == "ValueError"
        [(name, exception)] = failed["events"]
        assert name == "exception"
        assert exception["exception.type"] == "ValueError"
        assert exception["exception.message"] == "no"
        assert "raise ValueError('no')" in exception["exception.stacktrace"]


async def test_service_name_and_headers_from_the_config(
    make_app: Callable[..., wistro.App], receiver: Receiver
) -> None:
    extra = "    service_name: checkout\n    headers:\n      x-api-key: s3cret\n"
    app = make_app({"wistro.yml": otlp_yml(receiver.url + "/", extra=extra), **CHAIN})
    await app.emit("t0", {"i": 1})
    await flush(app)
    assert {s["resource"]["service.name"] for s in receiver.spans} == {"checkout"}
    assert {k.lower(): v for k, v in receiver.headers.items()}["x-api-key"] == "s3cret"
    assert set(receiver.requests) == {"/v1/traces", "/v1/logs"}  # endpoint: the base URL


async def test_the_exporter_starts_again_after_close(
    make_app: Callable[..., wistro.App], receiver: Receiver
) -> None:
    app = make_app({"wistro.yml": otlp_yml(receiver.url), **CHAIN})
    await app.emit("t0", {"i": 1})
    await flush(app)
    await app.emit("t0", {"i": 2})
    await flush(app)
    assert len(receiver.spans) == 6 and len(by_trace(receiver.spans)) == 2


# ---------------------------------------------------------------- traceparent over HTTP

HTTP_PROJECT = {
    "src/order.step.py": """
        config = {"type": "api", "name": "Place order", "path": "/orders", "method": "POST",
                  "emits": ["order.placed"]}

        async def handler(req, ctx):
            await ctx.emit("order.placed", req.body)
            return {"status": 201, "body": {"ok": True}}
    """,
    "src/ship.step.py": step("Ship", ["order.placed", "hook"]),
}
HOOK = "api:\n  - path: /hook\n    method: POST\n    emits: hook\n"


@asynccontextmanager
async def serving(app: wistro.App) -> AsyncIterator[httpx.AsyncClient]:
    """``serve_http`` on a loopback port in this loop, with a client for it."""
    bound: asyncio.Future[HttpServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_http(app, "127.0.0.1", 0, bound))
    server = await asyncio.wait_for(bound, 10)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


async def test_an_api_request_with_traceparent_continues_the_callers_trace(
    make_app: Callable[..., wistro.App], receiver: Receiver
) -> None:
    app = make_app({"wistro.yml": otlp_yml(receiver.url, extra=HOOK), **HTTP_PROJECT})
    header = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    async with serving(app) as client:
        resp = await client.post("/orders", json={"id": 1}, headers={"traceparent": header})
        assert resp.status_code == 201, resp.text
        hook = await client.post("/hook", json={"id": 2}, headers={"traceparent": header})
        assert hook.status_code == 202, hook.text
    wistro_trace = resp.headers["x-wistro-trace-id"]
    assert wistro_trace != CALLER_TRACE
    await flush(app)

    spans = {s["name"]: s for s in receiver.spans}
    assert sorted(spans) == ["POST /orders", "hook process", "order.placed process"]
    assert {s["trace_id"] for s in spans.values()} == {CALLER_TRACE}
    api, ship = spans["POST /orders"], spans["order.placed process"]
    assert api["kind"] == SPAN_KIND_SERVER
    assert api["parent"] == CALLER_SPAN and api["flags"] & PARENT_IS_REMOTE
    assert api["attrs"] == {
        "http.request.method": "POST",
        "http.route": "/orders",
        "wistro.step": "Place order",
        "wistro.attempt": 1,
        "wistro.worker": api["attrs"]["wistro.worker"],
        "wistro.trace_id": wistro_trace,
    }
    assert ship["kind"] == SPAN_KIND_CONSUMER
    assert ship["parent"] == api["span_id"] and not ship["flags"] & PARENT_IS_REMOTE
    assert ship["attrs"]["wistro.trace_id"] == wistro_trace
    # the response names the root span, in the caller's trace
    assert resp.headers["traceparent"] == f"00-{CALLER_TRACE}-{api['span_id']}-01"
    # a wistro.yml endpoint (an emit): its first delivery is the caller's span's child
    hooked = spans["hook process"]
    assert hooked["parent"] == CALLER_SPAN and hooked["flags"] & PARENT_IS_REMOTE
    assert hooked["attrs"]["wistro.trace_id"] == hook.headers["x-wistro-trace-id"]
    # Wistro's own trace keeps the caller's span as the root's parent
    assert app.trace(wistro_trace)["spans"][0]["parent_span_id"] == CALLER_SPAN


@pytest.mark.parametrize(
    "header",
    [
        "not-a-traceparent",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",  # all-zero trace id
        f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01",  # version ff is invalid
        f"00-{CALLER_TRACE}-{CALLER_SPAN}",  # no flags
    ],
)
async def test_a_malformed_traceparent_starts_a_new_trace(
    make_app: Callable[..., wistro.App], receiver: Receiver, header: str
) -> None:
    app = make_app({"wistro.yml": otlp_yml(receiver.url, extra=HOOK), **HTTP_PROJECT})
    async with serving(app) as client:
        resp = await client.post("/orders", json={"id": 1}, headers={"traceparent": header})
        assert resp.status_code == 201, resp.text
        hook = await client.post("/hook", json={"id": 2}, headers={"traceparent": header})
        assert hook.status_code == 202, hook.text
    await flush(app)
    traces = by_trace(receiver.spans)
    wistro_trace = resp.headers["x-wistro-trace-id"]
    assert set(traces) == {wistro_trace, hook.headers["x-wistro-trace-id"]}
    api = next(s for s in traces[wistro_trace] if s["kind"] == SPAN_KIND_SERVER)
    assert api["parent"] == ""
    assert resp.headers["traceparent"] == f"00-{wistro_trace}-{api['span_id']}-01"
    assert [s["parent"] for s in traces[hook.headers["x-wistro-trace-id"]]] == [""]


async def test_an_unsampled_caller_is_not_exported(
    make_app: Callable[..., wistro.App], receiver: Receiver
) -> None:
    """The caller's sampled flag decides, as OpenTelemetry's parent-based sampling does."""
    app = make_app({"wistro.yml": otlp_yml(receiver.url), **HTTP_PROJECT})
    header = f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"
    async with serving(app) as client:
        resp = await client.post("/orders", json={"id": 1}, headers={"traceparent": header})
        plain = await client.post("/orders", json={"id": 2})
    assert resp.headers["traceparent"].startswith(f"00-{CALLER_TRACE}-")
    assert resp.headers["traceparent"].endswith("-00")
    await flush(app)
    assert set(by_trace(receiver.spans)) == {plain.headers["x-wistro-trace-id"]}


# ---------------------------------------------------------------- a collector that is down


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_collector_that_is_down_costs_one_warning(
    make_app: Callable[..., wistro.App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app({"wistro.yml": otlp_yml(f"http://127.0.0.1:{free_port()}"), **CHAIN})
    t0 = time.monotonic()
    runs = [await app.emit("t0", {"i": i}) for i in range(20)]
    await asyncio.sleep(1.5)  # the log processor exports on its schedule (1 s): it fails, retries
    assert all(r.record.status == "ok" and not r.errors for r in runs)
    await flush(app)
    assert time.monotonic() - t0 < 6  # close gives up the retries: no hang
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in warnings] == [("wistro.otel", "WARNING")], warnings
    assert "OpenTelemetry export of" in warnings[0].getMessage()
    assert "http://127.0.0.1:" in warnings[0].getMessage()


# ---------------------------------------------------------------- without the config

IMPORTS = """
import asyncio, sys
import wistro
app = wistro.load(sys.argv[1], state="memory", traces="memory")
async def main():
    run = await app.emit("t0", {"i": 1})
    assert run.record.status == "ok", run.errors
    await app.aclose()
asyncio.run(main())
print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
"""


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_config_opentelemetry_is_not_imported(tmp_path: Path) -> None:
    plain = write_project(tmp_path / "plain", {"wistro.yml": "name: plain\n", **CHAIN})
    result = run_script(IMPORTS, str(plain))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # the check is not vacuous: with the config, it is imported (nothing listens: one warning)
    yml = otlp_yml(f"http://127.0.0.1:{free_port()}")
    configured = write_project(tmp_path / "otel", {"wistro.yml": yml, **CHAIN})
    result = run_script(IMPORTS, str(configured))
    assert result.returncode == 0, result.stderr
    assert "opentelemetry.sdk.trace" in json.loads(result.stdout.replace("'", '"'))


def test_without_the_extra_the_config_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    yml = otlp_yml("http://127.0.0.1:4318")
    root = write_project(tmp_path / "otel", {"wistro.yml": yml, **CHAIN})
    script = """
    import sys
    sys.modules["opentelemetry.exporter.otlp.proto.http"] = None  # as if not installed
    import wistro
    from wistro.errors import ConfigError
    try:
        wistro.load(sys.argv[1], state="memory", traces="memory")
    except ConfigError as e:
        print(e.format())
    """
    result = run_script(script, str(root))
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.endswith("pip install 'wistro[otel]'"), line
