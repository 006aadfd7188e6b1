"""Long-lived language workers: the engine side of ``docs/worker-protocol.md``.

Two layers, both shared by every worker language (JavaScript/TypeScript, Go, ...):

``WorkerProcess`` - one child process speaking the protocol over stdin/stdout::

    proc = WorkerProcess(["node", "worker.mjs"], language="javascript", cwd=root,
                         on_call=handle_call)        # handle_call(msg) -> value | awaitable
    hello = await proc.start()                       # spawns, waits for `hello` (hello_timeout)
    value = await proc.request({"t": "load", "files": [...]})   # the id is assigned here
    proc.send({"t": "cancel", "id": 7})              # fire and forget
    await proc.close()                               # `shutdown`, wait, then kill

  * ``request`` returns the ``value`` of the matching ``result``; an ``error`` raises
    ``WorkerError(type, message, stack, file, line)``; a worker that exits or breaks the
    protocol fails every pending request with ``WorkerCrashed`` (``proc.alive`` turns False).
  * A ``call`` from the worker is passed to ``on_call(msg)``; its return value (awaited when it
    is awaitable) is sent back as ``result``; an exception is sent back as ``error`` with
    ``type`` = the exception class name and ``message`` = ``err.format()`` for a WistroError.
  * stderr is forwarded line by line to ``logging.getLogger("wistro.worker.<language>")``;
    the last lines are kept in ``proc.stderr_tail`` for crash messages.
  * Frames written in one loop iteration are flushed together (one syscall under load).

``WorkerRuntime`` - a ``LanguageRuntime`` base for worker languages. A subclass sets
``language``, ``suffixes`` (and ``languages`` when one worker serves several, e.g.
javascript + typescript) and implements::

    def command(self, root: Path) -> list[str] | None      # None: the toolchain is missing
    def toolchain_error(self, files) -> list[StepLoadError] # optional: the message per file
    def prepare(self, root: Path, files: list[Path]) -> None  # optional: build/compile, blocking
    def env(self, root: Path) -> dict[str, str]            # optional: extra environment
    def language_of(self, file: Path) -> str               # optional: a record's language

  * ``read()`` (sync, callable while an event loop runs) starts a short-lived worker in a helper
    thread, sends one batched ``load``, and maps ``steps``/``errors`` to StepSource /
    StepLoadError (``file`` + ``line``; the optional ``line`` of a step is where its config is).
  * ``bind()`` sets ``record.invoke``; the runtime's pool of long-lived workers
    (``runtimes.<config_key>.workers`` in wistro.yml, one by default; ``configure()`` sets it
    explicitly) is started on demand on the running loop (``prepare`` runs first, in a thread),
    a dead worker replaced at once with a small backoff (``restarts`` counts them, ``pids``
    lists every worker's hello pid). An invoke goes to the worker with the fewest in flight
    among those heard from lately.
  * Isolation (docs/worker-protocol.md): an invoke cancelled (its timeout) and not answered
    ``kill_grace_s`` later gets its worker killed; invokes in flight on a worker that died and
    were not at fault are sent again on a fresh worker, the engine never seeing the failure
    (``redeliveries`` counts them); workers die with the engine (``PR_SET_PDEATHSIG``).
  * An invoke sends ``invoke`` with ``data`` (JSON; pydantic models dumped) and ``ctx`` =
    ``{trace_id, span_id, step, flows}``; the worker's ``call``s are served with the real
    ``ctx`` (emit / state.* / log), and its deferred emits (``emits`` of a ``result``/``error``/
    ``emits`` frame) are published in order through ``ctx.emit`` (the step's emit check goes with
    its first invoke on each worker: ``invoke.emits``). A worker ``error`` raises ``StepError``
    (a HandlerError whose one-line message is ``<file>:<line>, step '<name>': <JSType>:
    <message>`` and whose ``.stack`` is also attached as an exception note, so the span's
    traceback shows it). On cancellation (the step's timeout) ``cancel`` is sent.
  * ``read()`` first takes the configs of files unchanged since ``wistro.yml.lock`` from the
    lock (``configs_from_lock(root, files)``; same sha256 as the lock's ``hash``): no worker and
    no toolchain needed for them.
  * ``aclose()`` sends ``shutdown`` (then kills); ``discard()`` does it from sync code (reload).

Other helpers: ``start_request_parts(head, rest)`` (a pre-encoded hot request: its JSON is
``head``, its id, ``rest``), ``encode_frame(msg)``, ``which(name, env_var)``,
``raw_config(name, lock_config)``.

Nothing here blocks the loop but ``read()``, which is synchronous by the runtime interface.
The exceptions (``WorkerError``, ``WorkerCrashed``, ``WorkerStartError``, ``StepError``) are
defined in :mod:`wistro.errors` and importable from here too.

The modules, each importing only those above it:

* ``framing`` - the frames: ``encode_frame``, the JSON codec (orjson, the stdlib where they
  would differ), ``MAX_FRAME``, error payloads;
* ``process`` - ``WorkerProcess``: the child process, its requests by id, crash handling;
* ``lockfile`` - ``configs_from_lock`` / ``raw_config``: configs read back from the lock;
* ``toolchain`` - ``which``: finding a worker language's toolchain;
* ``runtime`` - ``WorkerRuntime``: reading configs, the long-lived worker, restarts, invokes.
"""

from wistro.errors import StepError, WorkerCrashed, WorkerError, WorkerStartError
from wistro.runtimes.worker.framing import MAX_FRAME
from wistro.runtimes.worker.framing import encode_frame as encode_frame
from wistro.runtimes.worker.lockfile import configs_from_lock as configs_from_lock
from wistro.runtimes.worker.lockfile import raw_config as raw_config
from wistro.runtimes.worker.process import CallHandler as CallHandler
from wistro.runtimes.worker.process import WorkerProcess
from wistro.runtimes.worker.runtime import WorkerRuntime
from wistro.runtimes.worker.toolchain import which as which

__all__ = [
    "MAX_FRAME",
    "StepError",
    "WorkerCrashed",
    "WorkerError",
    "WorkerProcess",
    "WorkerRuntime",
    "WorkerStartError",
]
