"""``%wistro`` / ``%%wistro``: the project from a notebook cell.

The line is never expanded (``@no_var_expand``): JSON with ``{}`` and ``$`` passes through as typed.
``--wait`` on an emit is turned into an ``await`` of the magic's result by an input transformer
(when IPython's autoawait is on), so the cell gives the finished ``Run`` while the kernel's loop
keeps running the engine.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from pydantic import BaseModel

from wistro.errors import UsageError, WistroError
from wistro_jupyter.session import Session, red, running_loop

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

SUBCOMMANDS = [
    "load",
    "emit",
    "steps",
    "flows",
    "graph",
    "trace",
    "traces",
    "logs",
    "state",
    "activate",
    "deactivate",
    "check",
    "reload",
    "step",
    "dataset",
    "help",
]

HELP = """\
%wistro load [PATH] [--memory] [--env ENV]   load a project (default: this folder or a parent)
%wistro load [PATH] --attach                 join the project's shared bus: its workers run steps
%wistro emit TOPIC JSON [--wait]            emit an event; a live trace view (--wait: the Run)
%wistro emit TOPIC --data VAR [--wait]      the payload from a Python variable (dict or model)
%%wistro emit TOPIC [--wait]                the cell body is the JSON payload
%wistro steps | flows | traces              DataFrames of the registry, flows, recent runs
%wistro logs [TRACE_ID]                     structured logs as a DataFrame
%wistro state [GROUP]                       state values as a DataFrame
%wistro graph [FLOW]                        the interactive flow graph
%wistro trace [ID]                          the last trace (or one by id prefix)
%wistro activate STEP | deactivate STEP     deliver to a step, or stop (persisted in wistro.yml)
%wistro check                               diagnostics as a DataFrame
%wistro reload                              scan the step files again (runs are kept)
%%wistro step [--save src/PATH.step.py]     define a step in a cell (and write it to a file)
%wistro dataset add NAME [TRACE] | list | show NAME   datasets/NAME.jsonl (default: the last run)
The project app is `wistro_app`; `await wistro_app.emit(...)` works in a cell too."""


_MISSING = object()


@dataclass
class EmitArgs:
    topic: str = ""
    data: Any = _MISSING
    var: str | None = None
    wait: bool = False
    rest: list[str] = field(default_factory=list)


def parse_emit(text: str) -> EmitArgs:
    """``TOPIC [JSON] [--wait] [--data VAR]`` in any order after the topic. The JSON extends as far
    as a JSON value does (``raw_decode``), so it may hold spaces, ``--wait`` or ``$`` as text."""
    args = EmitArgs()
    pos, n = 0, len(text)
    decoder = json.JSONDecoder()
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        end = pos
        while end < n and not text[end].isspace():
            end += 1
        token = text[pos:end]
        if token == "--wait":
            args.wait = True
            pos = end
        elif token == "--data":
            pos = end
            while pos < n and text[pos].isspace():
                pos += 1
            end = pos
            while end < n and not text[end].isspace():
                end += 1
            if pos == end:
                raise UsageError("--data needs a variable name", hint="%wistro emit TOPIC --data x")
            args.var = text[pos:end]
            pos = end
        elif not args.topic and not token.startswith(("{", "[", '"')):
            args.topic = token
            pos = end
        elif args.data is _MISSING:
            try:
                args.data, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                shown = text[pos:] if len(text) - pos <= 120 else text[pos : pos + 117] + "..."
                raise UsageError(
                    f"the payload is not valid JSON: {e.msg} at column {e.colno}: {shown}"
                ) from None
        else:
            raise UsageError(
                f"unexpected {token!r} after the payload",
                hint="%wistro emit TOPIC JSON [--wait] [--data VAR]",
            )
    return args


def _name_arg(text: str) -> str:
    """A step name: the rest of the line, quotes optional (``Charge card`` or ``"Charge card"``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


@magics_class
class WistroMagics(Magics):
    def __init__(self, shell: InteractiveShell, session: Session) -> None:
        super().__init__(shell)
        self.session = session
        self.ip = shell

    @no_var_expand
    @line_cell_magic
    def wistro(self, line: str, cell: str | None = None) -> Any:
        """Wistro in a notebook: `%wistro` alone lists the subcommands."""
        try:
            return self.dispatch(line, cell)
        except WistroError as e:
            red(f"error: {e}")
            loop = running_loop()
            if loop is not None and _wants_wait("line" if cell is None else "cell", line):
                done: asyncio.Future[None] = loop.create_future()  # the cell awaits this
                done.set_result(None)
                return done
            return None

    def dispatch(self, line: str, cell: str | None) -> Any:
        sub, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        s = self.session
        if cell is not None:
            if sub == "emit":
                return self._emit(rest, cell)
            if sub == "step":
                return self._step(rest, cell)
            raise UsageError(
                f"`%%wistro {sub}` is not a cell magic",
                hint="use `%%wistro emit` or `%%wistro step`",
            )
        if sub in ("", "help", "--help", "-h"):
            print(HELP)
            return None
        if sub == "load":
            return self._load(rest)
        if sub == "emit":
            return self._emit(rest, None)
        if sub == "reload":
            app = s.reload()
            print(f"wistro: reloaded: {len(app.registry)} steps")
            for err in app.errors:
                red(f"error: {err}")
            return None
        if sub == "steps":
            return s.require_app().steps()
        if sub == "flows":
            return s.require_app().flows()
        if sub == "graph":
            return s.graph(rest or None)
        if sub == "trace":
            return s.trace(rest or None)
        if sub == "traces":
            return s.traces()
        if sub == "logs":
            return s.logs(trace_id=rest or None)
        if sub == "state":
            return s.state(rest or None)
        if sub == "check":
            return s.check()
        if sub in ("activate", "deactivate"):
            name = _name_arg(rest)
            if not name:
                raise UsageError(f"%wistro {sub} needs a step name")
            app = s.require_app()
            record = app.activate(name) if sub == "activate" else app.deactivate(name)
            s.touched()
            s.refresh_graphs()
            print(f"wistro: {sub}d {record.name!r}")
            return None
        if sub == "dataset":
            from wistro.eval.notebook import dataset_magic

            return dataset_magic(s.require_app(), s.last_run, rest)
        if sub == "step":
            raise UsageError("`%%wistro step` is a cell magic: the cell body is the step")
        raise UsageError(
            f"unknown subcommand {sub!r}", hint="`%wistro` alone lists the subcommands"
        )

    def _load(self, rest: str) -> None:
        try:
            tokens = shlex.split(rest)
        except ValueError as e:
            raise UsageError(f"cannot read the arguments: {e}") from None
        memory, attach, env, path = False, False, None, None
        it = iter(tokens)
        for tok in it:
            if tok == "--memory":
                memory = True
            elif tok == "--attach":
                attach = True
            elif tok == "--env":
                env = next(it, None)
                if env is None:
                    raise UsageError("--env needs a name")
            elif path is None:
                path = tok
            else:
                raise UsageError(
                    f"unexpected {tok!r}", hint="%wistro load [PATH] [--memory] [--attach]"
                )
        if memory and attach:
            raise UsageError("--attach joins the project's bus, state and traces: not --memory")
        kwargs: dict[str, Any] = {"memory": memory, "attach": attach}
        if env:
            kwargs["env"] = env
        app = self.session.load(path, **kwargs)
        where = " (memory state and traces)" if memory else ""
        if attach:
            where = f" (attached to the {app.engine.bus.name} bus: its workers run the steps)"
        print(f"wistro: loaded {app!r}{where}")
        for err in app.errors:
            red(f"error: {err}")

    def _emit(self, rest: str, cell: str | None) -> Any:
        args = parse_emit(rest)
        if not args.topic:
            raise UsageError("emit needs a topic", hint="%wistro emit TOPIC JSON")
        sources = (args.data is not _MISSING) + (args.var is not None) + bool(cell and cell.strip())
        if sources > 1:
            raise UsageError("give the payload once: JSON, --data VAR, or the cell body")
        data: Any = None
        if args.data is not _MISSING:
            data = args.data
        elif args.var is not None:
            if args.var not in self.ip.user_ns:
                raise UsageError(f"--data {args.var}: no such variable in the notebook")
            data = self.ip.user_ns[args.var]
            if not isinstance(data, dict | list | BaseModel):
                raise UsageError(
                    f"--data {args.var}: expected a dict or a pydantic model, "
                    f"got {type(data).__name__}"
                )
        elif cell and cell.strip():
            try:
                data = json.loads(cell)
            except json.JSONDecodeError as e:
                raise UsageError(
                    f"the cell is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
                ) from None
        return self.session.emit(args.topic, data, wait=args.wait)

    def _step(self, rest: str, cell: str) -> None:
        try:
            tokens = shlex.split(rest)
        except ValueError as e:
            raise UsageError(f"cannot read the arguments: {e}") from None
        save = None
        if tokens[:1] == ["--save"] and len(tokens) == 2:
            save = tokens[1]
        elif tokens:
            raise UsageError("usage: %%wistro step [--save src/PATH.step.py]")
        record = self.session.define_step(cell, save)
        if not save:
            topics = ", ".join(record.subscribes or record.virtual_subscribes) or "nothing"
            print(f"wistro: step {record.name!r} registered (receives {topics})")


# ---------------------------------------------------------------- completion


def completions(
    session: Session, shell: InteractiveShell, text_until_cursor: str
) -> tuple[list[str], str] | None:
    """What may come next on a ``%wistro`` line: ``(candidates, typed)`` where ``typed`` is the
    part of the argument already typed (a step name may hold spaces); None off a %wistro line."""
    after = text_until_cursor.lstrip()
    if not after.startswith("%"):
        return None
    after = after.lstrip("%")
    if not after.startswith("wistro") or (after[6:7] and not after[6:7].isspace()):
        return None
    after = after[len("wistro") :]
    parts = after.split()
    fresh = after.endswith((" ", "\t")) or not after
    typed = "" if fresh else (parts[-1] if parts else "")
    if not parts or (len(parts) == 1 and not fresh):
        return list(SUBCOMMANDS), typed
    sub = parts[0]
    index = len(parts) if fresh else len(parts) - 1  # which argument is being typed (1 = first)
    previous = parts[index - 1]
    app = session.app
    if sub == "emit":
        if previous == "--data":
            names = [
                k
                for k, v in shell.user_ns.items()
                if not k.startswith("_") and isinstance(v, dict | BaseModel)
            ]
            return sorted(names), typed
        if index == 1:
            return (sorted(app.registry.topics.topics) if app else []), typed
        return ["--wait", "--data"], typed
    if sub == "load":
        return ["--memory", "--env"], typed
    if sub == "step":
        return ["--save"], typed
    if app is None:
        return [], typed
    if sub in ("activate", "deactivate"):
        name = after.lstrip()[len(sub) :].lstrip().lstrip("\"'")
        return sorted(r.name for r in app.registry), name
    if sub == "graph" and index == 1:
        from wistro.tooling.graph import known_flows

        return known_flows(app), typed
    if sub == "trace" and index == 1:
        store = app.engine.store
        try:
            runs = store.list_runs(limit=20) if store else []
        except Exception:
            runs = []
        return [str(r["trace_id"])[:12] for r in runs], typed
    return [], typed


def make_matcher(session: Session, shell: InteractiveShell) -> Any:
    """An IPython completion matcher (API v2) for ``%wistro`` lines; on those lines it suppresses
    the other matchers, so Python keywords and names do not crowd the list."""
    from IPython.core.completer import CompletionContext, SimpleCompletion, context_matcher

    @context_matcher()  # type: ignore[untyped-decorator]  # IPython: context_matcher is unannotated
    def wistro_matcher(context: CompletionContext) -> dict[str, Any]:
        try:
            found = completions(session, shell, context.text_until_cursor)
        except Exception:
            found = None
        if found is None:
            return {"completions": [], "suppress": False}
        candidates, typed = found
        token = context.token
        cut = len(typed) - len(token)  # the completion replaces only the token being typed
        out = [
            SimpleCompletion(text=c[cut:] if cut > 0 else c, type="wistro")
            for c in candidates
            if c.startswith(typed)
        ]
        return {"completions": out, "suppress": True}

    return wistro_matcher


# ---------------------------------------------------------------- --wait -> await


def _wants_wait(kind: str, args: str) -> bool:
    sub, _, rest = args.strip().partition(" ")
    if sub != "emit":
        return False
    if kind == "cell":
        return "--wait" in rest.split()
    try:
        return parse_emit(rest).wait
    except WistroError:
        return False


class _WaitCalls(ast.NodeVisitor):
    """``get_ipython().run_line_magic('wistro', 'emit ... --wait')`` calls at the top level of a
    cell (not inside a function or class body, where ``await`` cannot go)."""

    def __init__(self) -> None:
        self.found: list[ast.Call] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        return

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        return

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        return

    def visit_Await(self, node: ast.Await) -> None:
        return  # already awaited

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if (
            isinstance(f, ast.Attribute)
            and f.attr in ("run_line_magic", "run_cell_magic")
            and isinstance(f.value, ast.Call)
            and isinstance(f.value.func, ast.Name)
            and f.value.func.id == "get_ipython"
            and len(node.args) >= 2
        ):
            name, args = (_str_constant(a) for a in node.args[:2])
            if name == "wistro" and args is not None and _wants_wait(f.attr.split("_")[1], args):
                self.found.append(node)
                return
        self.generic_visit(node)


def _str_constant(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class AwaitWaitTransformer:
    """An ``input_transformers_post`` entry: ``%wistro emit ... --wait`` -> ``(await ...)``."""

    wistro_wait = True  # marks wistro's transformer among a shell's input transformers

    def __init__(self, shell: InteractiveShell) -> None:
        from IPython.core.async_helpers import _asyncio_runner

        self.shell = shell
        self._asyncio_runner: object = _asyncio_runner  # the loop runner of a plain kernel

    def __call__(self, lines: list[str]) -> list[str]:
        if not self.shell.autoawait or self.shell.loop_runner is not self._asyncio_runner:
            return lines
        source = "".join(lines)
        if "'wistro'" not in source or "--wait" not in source:
            return lines
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return lines
        visitor = _WaitCalls()
        visitor.visit(tree)
        if not visitor.found:
            return lines
        encoded = [line.encode("utf-8") for line in source.splitlines(keepends=True)]
        edits: list[tuple[int, int, bytes]] = []
        for call in visitor.found:
            assert call.end_lineno is not None and call.end_col_offset is not None
            edits.append((call.end_lineno - 1, call.end_col_offset, b")"))
            edits.append((call.lineno - 1, call.col_offset, b"(await "))
        for row, col, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
            encoded[row] = encoded[row][:col] + text + encoded[row][col:]
        return [line.decode("utf-8") for line in encoded]


def await_wait_transformer(shell: InteractiveShell) -> AwaitWaitTransformer:
    """An ``input_transformers_post`` entry: ``%wistro emit ... --wait`` -> ``(await ...)``."""
    return AwaitWaitTransformer(shell)
