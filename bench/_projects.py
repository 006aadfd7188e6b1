"""Benchmark project generators. Each writes a complete Wistro project into ``root`` and
returns the project folder. Nothing here imports wistro, so the generators can run anywhere."""

from __future__ import annotations

import json
import tempfile
import textwrap
from pathlib import Path

CHAIN_HOPS = 5
FANOUT = 10

# field sets for the chain models (2-3 fields each), cycled over the steps
_FIELDS = [
    [("id", "int"), ("name", "str")],
    [("id", "int"), ("name", "str"), ("amount", "float")],
    [("id", "int"), ("amount", "float")],
    [("id", "int"), ("name", "str"), ("ok", "bool")],
    [("id", "int"), ("ok", "bool")],
]
_VALUES = {"int": "data.id", "str": "'x'", "float": "1.5", "bool": "True"}
_JSON_TYPES = {"int": "integer", "str": "string", "float": "number", "bool": "boolean"}


def new_root(prefix: str = "wistro-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def chain_first_payload(i: int = 0) -> dict:
    """A valid payload for topic t0 of the chain project."""
    return {"id": i, "name": "x"}


def _model_src(cls: str, fields: list[tuple[str, str]]) -> str:
    body = "\n".join(f"    {n}: {t}" for n, t in fields)
    return f"class {cls}(BaseModel):\n{body}\n"


def _emit_expr(fields: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{n!r}: {_VALUES[t]}" for n, t in fields) + "}"


# What each step of a chain variant does besides emitting (``write_chain(variant=...)``): its
# config keys, the lines its handler runs first, and whether the handler is a plain ``def``.
CHAIN_VARIANTS: dict[str, tuple[str, str, bool]] = {
    "plain": ("", "", False),
    "timeout": (', "timeout_s": 10', "", False),
    "log": ("", '    ctx.logger.info("hop", id=data.id, step=ctx.step)\n', False),
    "state": (
        "",
        '    await ctx.state.set("hops", f"{ctx.step}-{data.id}", {"id": data.id})\n',
        False,
    ),
    "await": ("", '    await __import__("asyncio").sleep(0)\n', False),
    "sync": ("", "", True),
    "sync state": (
        "",
        '    ctx.state.set("hops", f"{ctx.step}-{data.id}", {"id": data.id})\n',
        True,
    ),
}


def write_chain(root: Path, hops: int = CHAIN_HOPS, variant: str = "plain") -> Path:
    """A ``hops``-step chain: step i subscribes t{i}, emits t{i+1}; the last emits nothing.
    Each step has its own pydantic input model with 2-3 fields. ``variant`` (``CHAIN_VARIANTS``)
    adds the same thing to every step: a time limit, a log line, a state write, one wait
    (``await asyncio.sleep(0)``), a plain ``def`` handler (on a handler thread), or a plain
    ``def`` handler writing state."""
    extra, prologue, sync = CHAIN_VARIANTS[variant]
    proj = root / "chain"
    src = proj / "src" / "chain"
    src.mkdir(parents=True)
    (proj / "wistro.yml").write_text("name: chain\n")
    for i in range(hops):
        fields = _FIELDS[i % len(_FIELDS)]
        last = i == hops - 1
        call = "ctx.emit" if sync else "await ctx.emit"
        if last:
            emits, body = "[]", "    return None\n"
        else:
            nxt = _FIELDS[(i + 1) % len(_FIELDS)]
            emits = f'["t{i + 1}"]'
            body = f'    {call}("t{i + 1}", {_emit_expr(nxt)})\n'
        (src / f"s{i}.step.py").write_text(
            "from pydantic import BaseModel\n\n"
            + _model_src(f"In{i}", fields)
            + f'\nconfig = {{"name": "s{i}", "subscribes": ["t{i}"], "emits": {emits},'
            f' "input": In{i}, "flows": ["chain"]{extra}}}\n\n'
            f"{'def' if sync else 'async def'} handler(data, ctx):\n{prologue}{body}"
        )
    return proj


def write_fanout(root: Path, n: int = FANOUT) -> Path:
    """One topic ``fan`` with ``n`` subscribers (pydantic input, no emits)."""
    proj = root / "fanout"
    src = proj / "src" / "fan"
    src.mkdir(parents=True)
    (proj / "wistro.yml").write_text("name: fanout\n")
    for i in range(n):
        (src / f"f{i}.step.py").write_text(
            "from pydantic import BaseModel\n\n"
            "class In(BaseModel):\n    id: int\n    name: str\n\n"
            f'config = {{"name": "f{i}", "subscribes": ["fan"], "input": In}}\n\n'
            "async def handler(data, ctx):\n    return None\n"
        )
    return proj


def fanout_payload(i: int = 0) -> dict:
    return {"id": i, "name": "x"}


def write_big(root: Path, n_steps: int = 5000, chain_len: int = 5, per_folder: int = 50) -> Path:
    """``n_steps`` steps as independent chains of ``chain_len`` steps, spread over nested folders
    (``src/area_A/group_G/chain_C/``). Inputs alternate between pydantic models and JSON Schema
    dicts; each chain is its own flow; a wistro.yml names the project and some flows."""
    proj = root / "big"
    (proj / "src").mkdir(parents=True)
    n_chains = (n_steps + chain_len - 1) // chain_len
    flows = "\n".join(
        f"  c{c}:\n    name: Chain {c}\n    description: generated chain {c}"
        for c in range(0, n_chains, 10)
    )
    (proj / "wistro.yml").write_text(
        textwrap.dedent("""\
            name: big
            src: src
            state:
              adapter: memory
            engine:
              default_concurrency: 8
            flows:
            """)
        + flows
        + "\n"
    )
    made = 0
    for c in range(n_chains):
        folder = (
            proj
            / "src"
            / f"area_{c // (per_folder * 10)}"
            / f"group_{c // per_folder}"
            / f"chain_{c}"
        )
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(chain_len):
            if made >= n_steps:
                break
            made += 1
            fields = _FIELDS[(c + j) % len(_FIELDS)]
            last = j == chain_len - 1 or made == n_steps
            topic, out = f"c{c}.t{j}", f"c{c}.t{j + 1}"
            if last:
                emits, body = "[]", "    return None\n"
            else:
                nxt = _FIELDS[(c + j + 1) % len(_FIELDS)]
                emits = json.dumps([out])
                body = f"    await ctx.emit({out!r}, {_emit_expr(nxt)})\n"
            if (c + j) % 2 == 0:  # pydantic input
                head = "from pydantic import BaseModel\n\n" + _model_src("In", fields)
                inp = "In"
                body = body.replace("data.id", "data.id")
            else:  # JSON Schema input: the handler gets a dict
                schema = {
                    "type": "object",
                    "properties": {n: {"type": _JSON_TYPES[t]} for n, t in fields},
                    "required": [n for n, _ in fields],
                }
                head = f"SCHEMA = {json.dumps(schema)}\n"
                inp = "SCHEMA"
                body = body.replace("data.id", 'data["id"]')
            (folder / f"s{j}.step.py").write_text(
                head
                + f'\nconfig = {{"name": "c{c}-s{j}", "subscribes": [{topic!r}], "emits": {emits},'
                f' "input": {inp}, "flows": ["c{c}"]}}\n\n'
                f"async def handler(data, ctx):\n{body}"
            )
    return proj


if __name__ == "__main__":  # quick manual check: python bench/_projects.py
    r = new_root()
    print(write_chain(r), write_fanout(r), write_big(r, 50))
