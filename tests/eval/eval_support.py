"""Small real projects for the eval tests: a 3-step order flow, optionally in a git repo."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

VALIDATE = """
from pydantic import BaseModel

class OrderPlaced(BaseModel):
    order_id: str
    amount_cents: int

config = {"name": "Validate", "subscribes": ["order.placed"], "input": OrderPlaced,
          "emits": ["order.validated", "order.rejected"], "flows": ["orders"]}

async def handler(order, ctx):
    if order.amount_cents <= 0:
        await ctx.emit("order.rejected", {"order_id": order.order_id})
        return
    await ctx.emit("order.validated", {"order_id": order.order_id, "amount_cents": order.amount_cents})
"""

PRICE = """
config = {"name": "Price", "subscribes": ["order.validated"],
          "emits": ["order.priced"], "flows": ["orders"]}

TAX = __TAX__

async def handler(data, ctx):
    total = round(data["amount_cents"] * (1 + TAX))
    await ctx.state.set("orders", data["order_id"], {"total": total})
    await ctx.emit("order.priced", {"order_id": data["order_id"], "total": total})
"""

NOTIFY = """
config = {"name": "Notify", "subscribes": ["order.priced"],
          "emits": ["order.notified"], "flows": ["orders"]}

async def handler(data, ctx):
    await ctx.emit("order.notified", {"order_id": data["order_id"], "total": data["total"]})
"""

ORDERS = [{"order_id": f"A{i}", "amount_cents": 100 * (i + 1)} for i in range(6)]


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def order_files(tax: float = 0.2) -> dict[str, str]:
    return {
        "wistro.yml": "name: orders\n",
        "src/validate.step.py": VALIDATE,
        "src/price.step.py": PRICE.replace("__TAX__", repr(tax)),
        "src/notify.step.py": NOTIFY,
    }


def git(root: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()
