"""The error tree of ``wistro.errors``: every class derives from ``WistroError`` and the built-in
it resembles, the module docstring draws exactly the classes the module defines (with their
parents and built-ins), ``str()`` is one line naming the culprit, ``trace_id`` is a real field,
and the old import paths still give the same classes."""

from __future__ import annotations

import asyncio
import builtins
import importlib
import inspect
import pickle
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import wistro
import wistro.errors as errors_module
from wistro.errors import (
    AuthFailure,
    Disconnected,
    DuplicateRequest,
    GoBuildError,
    HandlerError,
    HandlerTimeout,
    HttpError,
    ProjectNotFound,
    StepError,
    StepLoadError,
    StepLoadErrors,
    UnknownStepError,
    UnknownTopicError,
    WistroError,
    WorkerCrashed,
    WorkerError,
    WorkerStartError,
)
from wistro.triggers.http import HttpServer, serve_http

# The decision per class: the built-in it resembles (``Exception``: none fits). Pinned here as
# well as drawn in the docstring, so that neither can change alone.
BUILTIN: dict[str, type[BaseException]] = {
    "WistroError": Exception,
    "ProjectNotFound": FileNotFoundError,
    "ConfigError": ValueError,
    "StepLoadError": ImportError,
    "DuplicateStepError": ImportError,
    "GoBuildError": ImportError,
    "StepLoadErrors": ImportError,
    "SchemaConflictError": Exception,
    "UnknownTopicError": LookupError,
    "UndeclaredEmitError": Exception,
    "PayloadError": ValueError,
    "UnknownStepError": LookupError,
    "HandlerError": Exception,
    "StepError": Exception,
    "HandlerTimeout": TimeoutError,
    "EngineCallTimeout": TimeoutError,
    "StateError": ValueError,
    "LockError": Exception,
    "StaleLockError": Exception,
    "TraceNotFound": LookupError,
    "TraceStoreError": Exception,
    "CorruptTraceStore": Exception,
    "BusError": Exception,
    "WorkerError": Exception,
    "WorkerCrashed": RuntimeError,
    "WorkerStartError": RuntimeError,
    "HttpError": Exception,
    "Disconnected": ConnectionError,
    "AuthFailure": Exception,
    "DuplicateRequest": Exception,
    "DatasetNotFound": LookupError,
    "DatasetError": ValueError,
    "DuplicateSampleError": ValueError,
    "VersionError": Exception,
    "EvalNotFound": LookupError,
    "UsageError": Exception,
}

# Where a class used to live (and is still importable from): module -> names.
OLD_HOMES = {
    "wistro.runtimes.worker": ["WorkerError", "WorkerCrashed", "WorkerStartError", "StepError"],
    "wistro.runtimes.golang": ["GoBuildError"],
    "wistro.triggers.http_body": ["HttpError", "Disconnected"],
    "wistro.triggers.http": ["HttpError", "Disconnected"],
    "wistro.triggers.auth": ["AuthFailure", "DuplicateRequest"],
    "wistro.eval.errors": [
        "DatasetNotFound",
        "DatasetError",
        "DuplicateSampleError",
        "VersionError",
        "EvalNotFound",
    ],
    "wistro_jupyter.magics": ["UsageError"],
}

# Errors that are answers to an HTTP client rather than reports about a project: no location,
# ``str()`` is the text a client may see.
RESPONSES = {"HttpError", "Disconnected", "AuthFailure", "DuplicateRequest"}


def defined_classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(errors_module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors_module.__name__
    }


def drawn_tree() -> list[tuple[int, str, str | None]]:
    """``(depth, name, built-in or None)`` for each line of the docstring's drawing."""
    doc = errors_module.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    rows: list[tuple[int, str, str | None]] = []
    for line in block.split("\n")[1:]:
        if not line.strip():
            break
        m = re.fullmatch(r"( {4}(?:  )*)([A-Z]\w*)(?: \[(\w+)\])?", line)
        assert m, f"not a line of the drawing: {line!r}"
        rows.append(((len(m.group(1)) - 4) // 2, m.group(2), m.group(3)))
    return rows


def tree_parent(cls: type[BaseException]) -> type[BaseException] | None:
    """The base in the tree (None for the root)."""
    inside = [b for b in cls.__bases__ if issubclass(b, WistroError)]
    assert len(inside) <= 1, cls
    return inside[0] if inside else None


def added_builtins(cls: type[BaseException]) -> list[type[BaseException]]:
    """Built-in bases a class adds to its tree parent."""
    return [b for b in cls.__bases__ if not issubclass(b, WistroError) and b is not Exception]


# ---------------------------------------------------------------- the tree and its drawing


def test_the_drawing_lists_every_class_once_with_its_parent_and_builtin() -> None:
    rows = drawn_tree()
    names = [name for _, name, _ in rows]
    assert len(names) == len(set(names)), "a class is drawn twice"
    classes = defined_classes()
    assert set(names) == set(classes), "the drawing and the module's classes differ"
    assert rows[0] == (0, "WistroError", None) and all(depth > 0 for depth, _, _ in rows[1:])
    stack: list[str] = []
    for depth, name, builtin in rows:
        assert depth <= len(stack), f"{name} is indented too far"
        del stack[depth:]
        parent = tree_parent(classes[name])
        assert (parent.__name__ if parent else None) == (stack[-1] if stack else None), name
        assert [b.__name__ for b in added_builtins(classes[name])] == (
            [builtin] if builtin else []
        ), f"{name}: the drawing says [{builtin}]"
        stack.append(name)


def test_every_class_has_a_pinned_builtin() -> None:
    assert set(BUILTIN) == set(defined_classes())
    assert set(errors_module.__all__) == set(defined_classes())


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_each_class_derives_from_wistro_error_and_its_builtin(name: str) -> None:
    cls = defined_classes()[name]
    assert issubclass(cls, WistroError)
    assert issubclass(cls, BUILTIN[name])
    for extra in added_builtins(cls):  # a built-in, not some library's exception
        assert getattr(builtins, extra.__name__) is extra
    if BUILTIN[name] is Exception:  # no built-in fits: nothing narrower than Exception catches it
        narrower = {ValueError, LookupError, OSError, ImportError, RuntimeError, TypeError}
        assert not any(issubclass(cls, b) for b in narrower), name
    if issubclass(cls, KeyError):  # KeyError's str() adds quotes
        pytest.fail(f"{name} is a KeyError: use LookupError")


# ---------------------------------------------------------------- str(): one line, culprit first


WHERE = {"file": "src/pay.step.py", "line": 7, "step": "Pay", "topic": "order.paid", "field": "x"}
WHERE_TEXT = "src/pay.step.py:7, step 'Pay', topic 'order.paid', field 'x'"


def example(name: str) -> tuple[WistroError, str]:
    """An instance of class ``name`` (with a location where the class takes one) and the
    ``str()`` it must have."""
    cls: Any = defined_classes()[name]
    if name == "StepLoadErrors":
        first = StepLoadError("no config", file="src/a.step.py", line=1)
        second = StepLoadError("syntax error", file="src/b.step.py", line=2)
        return cls([first, second]), "src/a.step.py:1: no config (and 1 more)"
    if name == "GoBuildError":
        err = cls("src/a.step.go:3: undefined: x", {Path("src/a.step.go"): [(3, "x")]}, "out")
        return err, "src/a.step.go:3: undefined: x"
    if name == "StepError":
        where = {"file": "src/a.step.js", "line": 7, "step": "A"}
        err = cls("x is undefined", error_type="TypeError", stack="at a.js:7", **where)
        return err, "src/a.step.js:7, step 'A': TypeError: x is undefined"
    if name == "WorkerError":
        err = cls("TypeError", "boom", "stack", "/x/a.step.js", 3)
        return err, "/x/a.step.js:3: TypeError: boom"
    if name == "HttpError":
        return cls(422, "validation_error", "request validation failed"), (
            "request validation failed"
        )
    if name == "Disconnected":
        return cls(), "the client went away while sending its body"
    if name == "AuthFailure":
        return cls(403, "key abc is not allowed"), "Forbidden"
    if name == "DuplicateRequest":
        return cls("message already accepted"), "Duplicate"
    return cls("it broke", hint="fix it", **WHERE), f"{WHERE_TEXT}: it broke (hint: fix it)"


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_str_is_one_line_naming_the_location(name: str) -> None:
    err, expected = example(name)
    assert str(err) == expected
    assert "\n" not in str(err)
    assert str(err) == err.format() == err.args[0]
    assert repr(err).startswith(f"{name}(")
    if name not in RESPONSES | {"GoBuildError", "StepLoadErrors"}:  # those two: in the message
        assert err.location() and str(err).startswith(err.location())
    try:
        raise err
    except BUILTIN[name] as caught:  # the built-in catches it, and str() is still the line
        assert str(caught) == expected


@pytest.mark.parametrize("name", ["ProjectNotFound", "StepLoadError", "HandlerTimeout"])
def test_a_moved_location_shows_in_str_whatever_the_builtin(name: str) -> None:
    """discovery and the engine change ``file``/``step`` and put ``format()`` back in ``args``;
    OSError and ImportError bases must not keep the old text."""
    err: WistroError = defined_classes()[name]("broken", file="/abs/src/a.step.py", line=2)
    err.file = "src/a.step.py"
    err.args = (err.format(),)
    assert str(err) == "src/a.step.py:2: broken"


def test_builtin_attributes_stay_empty() -> None:
    missing = ProjectNotFound("no Wistro project in /tmp/x or its parents")
    assert (missing.errno, missing.strerror, missing.filename) == (None, None, None)
    broken = StepLoadError("no config", file="src/a.step.py")
    assert (broken.name, broken.path) == (None, None)


def test_auth_failure_never_shows_its_reason() -> None:
    err = AuthFailure(401, "key sk_live_123 unknown")
    assert str(err) == err.message == "Unauthorized"
    assert "sk_live_123" not in str(err.to_dict())
    assert repr(err) == "AuthFailure(status=401, reason='key sk_live_123 unknown')"
    assert DuplicateRequest("seen").duplicate is True


def test_errors_survive_pickling() -> None:
    err = UnknownTopicError("no step subscribes to or emits this topic", topic="nope")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is UnknownTopicError and str(again) == str(err)


# ---------------------------------------------------------------- trace_id


def test_trace_id_is_a_field_in_to_dict() -> None:
    err = WistroError("x", step="A")
    assert err.trace_id is None and err.to_dict()["trace_id"] is None
    err.trace_id = "abc"
    assert err.to_dict() == {
        "error": "WistroError",
        "message": "x",
        "file": None,
        "line": None,
        "step": "A",
        "topic": None,
        "field": None,
        "trace_id": "abc",
    }
    assert WistroError("y", trace_id="def").trace_id == "def"
    assert HttpError(400, "bad_request", "no", trace_id="t1").to_dict()["trace_id"] == "t1"


API_STEPS = {
    "src/boom.step.py": """
        config = {"type": "api", "name": "Boom", "path": "/boom", "method": "POST", "emits": []}

        async def handler(req, ctx):
            raise RuntimeError("the database is down")
    """,
    "src/slow.step.py": """
        import asyncio
        config = {"type": "api", "name": "Slow", "path": "/slow", "method": "GET",
                  "timeout_s": 0.05, "emits": []}

        async def handler(req, ctx):
            await asyncio.sleep(30)
    """,
}


async def test_engine_call_puts_the_run_on_the_error(make_app: Callable[..., wistro.App]) -> None:
    app = make_app(API_STEPS)
    with pytest.raises(HandlerError) as failed:
        await app.engine.call(app.step("Boom"), {}, trigger="api", topic="POST /boom")
    err = failed.value
    assert err.trace_id and err.to_dict()["trace_id"] == err.trace_id
    assert isinstance(err.__cause__, RuntimeError)
    with pytest.raises(TimeoutError) as slow:  # a HandlerTimeout is a TimeoutError
        await app.engine.call(app.step("Slow"), {}, trigger="api", topic="GET /slow")
    assert isinstance(slow.value, HandlerTimeout) and slow.value.trace_id
    await app.drain()
    assert app.trace(err.trace_id)["spans"][0]["error"] == "RuntimeError: the database is down"
    assert app.trace(slow.value.trace_id)["spans"][0]["status"] == "timeout"


async def test_a_refused_emit_carries_the_refused_run(make_app: Callable[..., wistro.App]) -> None:
    app = make_app(API_STEPS)
    with pytest.raises(LookupError) as refused:
        await app.emit("no.such.topic", {})
    err = refused.value
    assert isinstance(err, UnknownTopicError) and err.trace_id
    assert err.to_dict()["trace_id"] == err.trace_id
    await app.drain()
    assert app.trace(err.trace_id)["run"]["status"] == "refused"


@asynccontextmanager
async def serving(app: wistro.App) -> AsyncIterator[httpx.AsyncClient]:
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


async def test_a_failing_api_handler_over_http_names_the_run(
    make_app: Callable[..., wistro.App],
) -> None:
    app = make_app(API_STEPS)
    raised: list[BaseException] = []
    call = app.engine.call

    async def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            return await call(*args, **kwargs)
        except BaseException as e:
            raised.append(e)
            raise

    app.engine.call = recording  # type: ignore[method-assign]
    async with serving(app) as client:
        resp = await client.post("/boom", json={})
        assert resp.status_code == 500
        trace_id = resp.headers["x-wistro-trace-id"]
        assert resp.json()["error"]["trace_id"] == trace_id
    [err] = raised
    assert isinstance(err, HandlerError) and err.trace_id == trace_id
    assert err.to_dict()["trace_id"] == trace_id


# ---------------------------------------------------------------- raised for real, caught by the built-in


def test_real_raises_are_caught_by_their_builtin(
    tmp_path: Path, make_app: Callable[..., wistro.App]
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as missing:
        wistro.load(tmp_path / "empty")
    assert isinstance(missing.value, ProjectNotFound) and "\n" not in str(missing.value)
    app = make_app(API_STEPS)
    with pytest.raises(LookupError) as unknown:
        app.step("Nope")
    assert isinstance(unknown.value, UnknownStepError)
    assert not str(unknown.value).startswith("'")  # not a KeyError: no quotes around the line
    with pytest.raises(ImportError) as broken:
        make_app({"src/bad.step.py": "config = {"}, errors_ok=True, strict=True)
    assert isinstance(broken.value, StepLoadErrors) and "bad.step.py" in str(broken.value)


# ---------------------------------------------------------------- the old homes


@pytest.mark.parametrize(
    ("module", "name"), [(m, n) for m, names in OLD_HOMES.items() for n in names]
)
def test_old_import_paths_give_the_same_class(module: str, name: str) -> None:
    if module.startswith("wistro_jupyter"):
        pytest.importorskip("anywidget")
    assert getattr(importlib.import_module(module), name) is getattr(errors_module, name)


def test_auth_http_and_worker_errors_are_wistro_errors() -> None:
    for err in (
        AuthFailure(401, "no key"),
        DuplicateRequest("seen"),
        HttpError(413, "payload_too_large", "too big"),
        Disconnected(),
        WorkerError("Error", "bad"),
        WorkerCrashed("the node worker exited (exit code 3)"),
        WorkerStartError("cannot start the node worker"),
        StepError("bad", step="A"),
        GoBuildError("build failed", {}, ""),
    ):
        assert isinstance(err, WistroError), type(err)
    assert issubclass(WorkerStartError, WorkerCrashed) and issubclass(StepError, HandlerError)
    assert issubclass(GoBuildError, StepLoadError)
