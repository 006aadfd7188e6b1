"""``wistro dev --versions HEAD~1,HEAD [--split 25,75]``: several versions of the project on one
machine, with the traffic split applied, to try a split without a cluster.

Each revision runs in ``wistro worker`` processes of its own: a git revision from a temporary
``git worktree`` (checked out by the caller's ``checkout``, the evals' helper, and labelled there
with ``wistro lock --label REV``), a folder (``.``: the working tree) from its step files as they
are, with no lock written. Every worker runs on the bus, state and traces of the checkout ``dev``
was started in (``wistro worker --data-from``), so ``wistro traces``, ``wistro versions`` and
``app.runs()`` there see every run. The dev server itself serves HTTP and cron and consumes
nothing; it stores the split on the bus (by version id) and puts back the split that was there
before when it stops, after which it stops the workers (SIGTERM, SIGKILL after the grace) and
the worktrees are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from wistro.app import App
from wistro.errors import VersionError, WistroError
from wistro.project.lock import read_lock, short_version
from wistro.project.paths import LOCK_NAME
from wistro.server.serve import _serve, load_error_lines, watched
from wistro.tooling import console

# ``checkout(revision, root)``: ``(project folder, commit)`` of a revision, a git worktree removed
# on exit, or a folder as it is (commit None): ``wistro.eval.version.checkout``.
Checkout = Callable[[str, Path], AbstractContextManager[tuple[Path, str | None]]]

READY = re.compile(r"^worker ready: .*, version (\S+)(?: .*)?, pid (\d+)\) in ")
READY_TIMEOUT_S = 60.0
COLORS = ("cyan", "magenta", "yellow", "green", "blue")
HINT = "a branch, tag, commit or `HEAD~1` of this git checkout, or a folder (`.`: the working tree)"


@dataclass
class DevVersion:
    """One revision of ``--versions`` and its worker process."""

    name: str  # as given: HEAD~1, main, .
    weight: float
    folder: Path | None = None  # the project folder it runs from
    locked: bool = False  # a worktree, run from its lock; else a folder, scanned (--no-lock)
    expected: str | None = None  # the id its lock says
    id: str | None = None  # the id its worker registered (its ready line)
    pid: int | None = None
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pipes: list[asyncio.Task[None]] = field(default_factory=list)


def parse_revisions(text: str) -> list[str]:
    """``HEAD~1,HEAD``: two revisions or more, each once."""
    names = [n.strip() for n in text.split(",")]
    example = "e.g. --versions HEAD~1,HEAD (`.` is the working tree)"
    if any(not n for n in names):
        raise WistroError(f"--versions {text!r}: a revision is empty", hint=example)
    if len(names) < 2:
        raise WistroError(f"--versions needs two revisions or more, got {text!r}", hint=example)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise WistroError(f"--versions {text!r}: {', '.join(twice)} given twice", hint=example)
    return names


def parse_split(text: str | None, count: int) -> list[float]:
    """``25,75``: one weight per revision, in the order of ``--versions`` (default: equal)."""
    if text is None:
        return [1.0] * count
    parts = [p.strip() for p in text.split(",")]
    hint = f"one number per version, in the order of --versions, e.g. --split {','.join(['50'] * count)}"
    if len(parts) != count:
        raise WistroError(
            f"--split {text!r}: {len(parts)} weight(s) for {count} versions", hint=hint
        )
    weights = []
    for part in parts:
        try:
            weight = float(part)
        except ValueError:
            raise WistroError(f"--split {text!r}: {part!r} is not a number", hint=hint) from None
        if not math.isfinite(weight) or weight < 0:
            raise WistroError(f"--split {text!r}: {part!r} is not a weight >= 0", hint=hint)
        weights.append(weight)
    if not any(weights):
        raise WistroError(f"--split {text!r}: every weight is 0", hint=hint)
    return weights


def label_of(revision: str) -> str:
    """The lock label of a revision's worktree: its name, with what a label should not hold
    (``=``, spaces, ``@{}``) as ``-``."""
    return re.sub(r"[^A-Za-z0-9._~^/+-]+", "-", revision).strip("-") or "rev"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _wistro(folder: Path, env: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "wistro", "-C", str(folder), "--env", env, *args]


def _lock_worktrees(versions: list[DevVersion], env: str) -> None:
    """``wistro lock --label REV`` in each worktree (only there: never the user's checkout), at
    once; each version's id is then the one its lock says."""
    locked = [v for v in versions if v.locked and v.folder is not None]
    procs: list[subprocess.Popen[str]] = []
    try:
        for v in locked:
            assert v.folder is not None
            cmd = _wistro(v.folder, env, "lock", "--label", label_of(v.name))
            procs.append(
                subprocess.Popen(
                    cmd,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    env=_env(),
                )
            )
        for v, proc in zip(locked, procs, strict=True):
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                last = [line for line in err.splitlines() if line.strip()][-1:] or ["no output"]
                raise WistroError(
                    f"version {v.name}: `wistro lock` failed in its worktree: {last[0]}"
                )
            assert v.folder is not None
            v.expected = short_version(read_lock(v.folder / LOCK_NAME)["version"])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _same_versions(versions: list[DevVersion], attr: str) -> None:
    seen: dict[str, str] = {}
    for v in versions:
        vid = getattr(v, attr)
        if vid is None:
            continue
        if vid in seen:
            raise WistroError(
                f"{seen[vid]} and {v.name} are the same version ({vid}): a split needs versions "
                "whose steps or config differ",
                hint="pick revisions that change the project (`git log --oneline -- .`)",
            )
        seen[vid] = v.name


class Workers:
    """One ``wistro worker`` subprocess per version, its output forwarded line by line with the
    version's name in front; a worker that dies is said in one line."""

    def __init__(self, versions: list[DevVersion], root: Path, env: str, grace_s: float) -> None:
        self.versions = versions
        self.root = root
        self.env = env
        self.grace_s = grace_s
        self.stopping = False
        self.watching: list[asyncio.Task[None]] = []
        self.width = max(len(v.name) for v in versions)

    def _prefix(self, i: int, v: DevVersion) -> str:
        return click.style(f"[{v.name}]".ljust(self.width + 2), fg=COLORS[i % len(COLORS)])

    async def start(self) -> None:
        for i, v in enumerate(self.versions):
            assert v.folder is not None
            args = ["worker", "--data-from", str(self.root), "--grace-s", f"{self.grace_s:g}"]
            if not v.locked:
                args.append("--no-lock")
            v.proc = await asyncio.create_subprocess_exec(
                *_wistro(v.folder, self.env, *args),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_env(),
                start_new_session=True,  # a Ctrl-C in the terminal reaches dev only: dev stops it
                limit=1 << 20,
            )
            assert v.proc.stdout is not None and v.proc.stderr is not None
            prefix = self._prefix(i, v)
            v.pipes = [
                asyncio.create_task(self._forward(v, prefix, v.proc.stdout, err=False)),
                asyncio.create_task(self._forward(v, prefix, v.proc.stderr, err=True)),
            ]
            self.watching.append(asyncio.create_task(self._watch(v)))

    async def _forward(
        self, v: DevVersion, prefix: str, stream: asyncio.StreamReader, err: bool
    ) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the limit: what is buffered, cut
                raw = await stream.read(1 << 16)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not err and v.id is None and (m := READY.search(line)):
                v.id, v.pid = m.group(1), int(m.group(2))
                v.ready.set()
            click.echo(f"{prefix} {console.clean(line)}", err=err)

    async def _watch(self, v: DevVersion) -> None:
        assert v.proc is not None
        code = await v.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait(v.pipes, timeout=2)  # its last lines first
        if not self.stopping and v.ready.is_set():
            how = f"was killed (signal {-code})" if code < 0 else f"exited with code {code}"
            click.echo(
                click.style(
                    f"the worker of {v.name} (version {v.id}, pid {v.pid}) {how}: its share of "
                    "new traces goes to the other versions",
                    fg="red",
                ),
                err=True,
            )

    async def wait_ready(self, stop: asyncio.Event) -> bool:
        """Until every worker printed its ready line (True), or a signal came (False)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(v.ready.is_set() for v in self.versions):
            if stop.is_set():
                return False
            for v in self.versions:
                assert v.proc is not None
                if v.proc.returncode is not None and not v.ready.is_set():
                    await asyncio.wait(v.pipes, timeout=2)
                    raise WistroError(
                        f"the worker of {v.name} exited with code {v.proc.returncode} before "
                        "it was ready (its output is above)"
                    )
            if time.monotonic() > deadline:
                late = ", ".join(v.name for v in self.versions if not v.ready.is_set())
                raise WistroError(f"the worker of {late} was not ready after {READY_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)
        return True

    def alive(self) -> list[DevVersion]:
        return [v for v in self.versions if v.proc is not None and v.proc.returncode is None]

    async def stop(self) -> None:
        """SIGTERM to every worker (each finishes what it runs, up to the grace), then SIGKILL to
        what is left, and to anything a worker started (its session)."""
        self.stopping = True
        alive = self.alive()
        if alive:
            click.echo(f"stopping {len(alive)} worker(s)…")
        for v in alive:
            assert v.proc is not None
            with contextlib.suppress(ProcessLookupError):
                v.proc.send_signal(signal.SIGTERM)
        waits = [v.proc.wait() for v in alive if v.proc is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.grace_s + 5):
                await asyncio.gather(*waits)
        for v in self.alive():
            click.echo(f"killing the worker of {v.name} (pid {v.proc and v.proc.pid})", err=True)
        self.kill()
        for v in self.versions:
            if v.proc is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await v.proc.wait()
                with contextlib.suppress(Exception):
                    await asyncio.wait(v.pipes, timeout=2)

    def kill(self) -> None:
        for v in self.versions:
            if v.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(v.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While worktrees are made and locked: SIGTERM unwinds like Ctrl-C (worktrees removed)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_dev_versions(
    project: str | None,
    env: str,
    revisions: list[str],
    weights: list[float],
    checkout: Checkout,
    *,
    reload: bool = True,
    host: str = "127.0.0.1",
    port: int = 3111,
    grace_s: float = 30.0,
) -> None:
    started = time.perf_counter()
    app = App.load(project, env=env, bus_default="local", consume=False)
    if not app.engine.bus.shared:
        raise WistroError(
            "wistro dev --versions needs a shared bus: bus.adapter is 'memory'",
            field="bus.adapter",
            hint="remove it (dev's default is the local bus) or set `bus: {adapter: local}`",
        )
    root = app.project.root
    versions = [DevVersion(name, weight) for name, weight in zip(revisions, weights, strict=True)]
    with contextlib.ExitStack() as stack:
        with _sigterm_interrupts():
            for v in versions:
                try:
                    folder, commit = stack.enter_context(checkout(v.name, root))
                except VersionError as e:
                    raise WistroError(e.message, hint=HINT) from None
                v.folder, v.locked = folder, commit is not None
            _lock_worktrees(versions, env)
            _same_versions(versions, "expected")
        for line in load_error_lines(app):
            click.echo(line)
        session = _Session(app, versions, Workers(versions, root, env, grace_s), stack.close)
        asyncio.run(session.run(started, watched(app) if reload else None, host, port, grace_s))


class _Session:
    def __init__(
        self, app: App, versions: list[DevVersion], workers: Workers, remove: Callable[[], None]
    ) -> None:
        self.app = app
        self.versions = versions
        self.workers = workers
        self.remove = remove  # the worktrees

    def abort(self) -> None:
        """A second signal: nothing waits any more."""
        self.workers.kill()
        self.remove()

    async def run(
        self, started: float, watch: list[Path] | None, host: str, port: int, grace_s: float
    ) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # until the server takes them over
            loop.add_signal_handler(sig, stop.set)
        previous: dict[str, Any] | None = None
        split_set = served = False
        try:
            await self.workers.start()
            if not await self.workers.wait_ready(stop):
                return
            _same_versions(self.versions, "id")
            self.app.engine.start()
            previous = await self.app.engine.bus.traffic()
            await self.app.set_traffic({v.id: v.weight for v in self.versions if v.id})
            split_set = True
            total = sum(v.weight for v in self.versions)
            for v in self.versions:
                click.echo(f"version {v.name} = {v.id}: 1 worker (pid {v.pid})")
            shares = ", ".join(f"{v.name} {100 * v.weight / total:g}%" for v in self.versions)
            click.echo(f"traffic: {shares} (stored on the bus; put back as it was on exit)")
            served = True
            await _serve(self.app, started, watch, host, port, grace_s, on_abort=self.abort)
        finally:
            if not served:
                await self.app.aclose(timeout=grace_s)
            if split_set:
                await self._restore(previous)
            await self.workers.stop()

    async def _restore(self, previous: dict[str, Any] | None) -> None:
        """Put back the split that was on the bus before (none: cleared)."""
        project = self.app.project
        app = App.load(
            project.root,
            env=project.env,
            bus_default="local",
            consume=False,
            state="memory",
            traces="memory",
        )
        try:
            app.engine.start()
            await app.engine.bus.set_traffic(previous)
            await app.engine.bus.broadcast({"op": "traffic", "from": app.engine.worker})
        except Exception as e:  # the bus is gone: the split stays, said once
            click.echo(f"warning: could not put the traffic split back: {e}", err=True)
        finally:
            await app.aclose()
