"""Helpers of the Workbench tests: a shop with a step that fails, a real kernel spoken to over a
comm, a real ``wistro dev`` and a real Jupyter server, each with timeouts on every wait."""

from __future__ import annotations

import json
import os
import queue
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from process_support import Process as _Process

TIMEOUT = 60.0  # seconds, for every start and every wait
ORDER = {"order_id": "A1", "amount_cents": 1200}

FLAKY = """
from pathlib import Path

config = {
    "name": "Flaky",
    "subscribes": ["job.started"],
    "emits": [],
    "flows": ["jobs"],
    "retries": 1,
    "retry_backoff_s": 0.01,
}


async def handler(data, ctx):
    if (Path(__file__).resolve().parents[1] / "fail.flag").exists():
        raise RuntimeError("flaky failed")
    ctx.logger.info("flaky ok", job=data.get("job"))
"""


def make_shop(root: Path, extra_config: str = "") -> Path:
    """``wistro init``'s shop at ``root`` plus ``Flaky`` (flow ``jobs``), which fails every
    attempt while ``fail.flag`` exists in the project folder (it does at first)."""
    from wistro.tooling.scaffold import create_project

    create_project(root)
    (root / "src" / "flaky.step.py").write_text(textwrap.dedent(FLAKY), encoding="utf-8")
    (root / "fail.flag").write_text("", encoding="utf-8")
    config = root / "wistro.yml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("flows:\n", "flows:\n  jobs: {name: Jobs, description: Flaky jobs}\n", 1)
    config.write_text(text + extra_config, encoding="utf-8")
    return root


REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of the processes started here: no WISTRO_ settings, and this checkout
    importable whatever is installed in the venv at the moment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


class Process(_Process):
    """``process_support.Process`` with the environment of the Workbench tests by default."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(args, cwd, env or clean_env())


class Dev:
    """A real ``wistro dev --port 0`` of the project at ``root``, and its Workbench endpoint."""

    def __init__(self, root: Path, reload: bool = False) -> None:
        self.root = root
        flags = [] if reload else ["--no-reload"]
        self.process = Process([sys.executable, "-m", "wistro", "dev", *flags, "--port", "0"], root)
        self.url = self.process.wait_for(r"^http: (\S+)").group(1)
        info = json.loads((root / ".wistro" / "server.json").read_text(encoding="utf-8"))
        self.token: str = info["token"]
        self.client = httpx.Client(timeout=TIMEOUT, trust_env=False)

    def post(self, body: Any, token: str | None = None) -> httpx.Response:
        return self.client.post(
            f"{self.url}/_wistro/workbench",
            json=body,
            headers={"x-wistro-token": self.token if token is None else token},
        )

    def op(self, op: str, **args: Any) -> Any:
        """The result of one op; fails the test on an error reply."""
        response = self.post({"op": op, "args": args})
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["ok"], reply
        return reply["result"]

    def error(self, op: str, **args: Any) -> str:
        response = self.post({"op": op, "args": args})
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["ok"] is False and "\n" not in reply["error"], reply
        return str(reply["error"])

    def stop(self) -> None:
        self.client.close()
        self.process.stop()


def wait_until(check: Any, timeout: float = TIMEOUT, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---------------------------------------------------------------- a real kernel over a comm


def kernelspec(folder: Path) -> str:
    """A kernelspec of this venv's Python under ``folder`` (put on JUPYTER_PATH)."""
    spec = folder / "kernels" / "wistro-workbench"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "wistro workbench test",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    return "wistro-workbench"


class Kernel:
    """A real ipykernel (jupyter_client's KernelManager) and a comm opened on it from this side:
    ``comm_open`` / ``comm_msg`` sent on the shell channel, replies read from iopub."""

    def __init__(self, cwd: Path, kernel_name: str) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=kernel_name)
        self.km.start_kernel(cwd=str(cwd), env=clean_env())
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)
        self.comm_id = ""
        self.replies: dict[Any, dict[str, Any]] = {}
        self.other_comm: list[dict[str, Any]] = []
        self._ids = iter(range(1, 1_000_000))

    def execute(self, code: str) -> str:
        """Run a cell; its stdout and stderr. Fails on an error in the cell."""
        msg_id = self.kc.execute(code)
        out: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self._keep_comm(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)

    def _keep_comm(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == self.comm_id:
            data = msg["content"]["data"]
            self.replies[data.get("id")] = data
        elif msg["msg_type"] in ("comm_msg", "comm_close"):
            self.other_comm.append(msg)

    def open_comm(self, target: str = "wistro.workbench") -> None:
        self.comm_id = uuid.uuid4().hex
        content = {"comm_id": self.comm_id, "target_name": target, "data": {}}
        self.kc.shell_channel.send(self.kc.session.msg("comm_open", content))

    def send(self, op: str, args: dict[str, Any] | None = None) -> int:
        request_id = next(self._ids)
        data = {"id": request_id, "op": op, "args": args or {}}
        content = {"comm_id": self.comm_id, "data": data}
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", content))
        return request_id

    def reply(self, request_id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while request_id not in self.replies:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to request {request_id} in {timeout} s"
            try:
                self._keep_comm(self.kc.get_iopub_msg(timeout=min(left, 1.0)))
            except queue.Empty:
                continue
        return self.replies.pop(request_id)

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        return self.reply(self.send(op, args))

    def op(self, op: str, **args: Any) -> Any:
        reply = self.request(op, **args)
        assert reply["ok"] is True, reply
        return reply["result"]

    def error(self, op: str, **args: Any) -> str:
        reply = self.request(op, **args)
        assert reply["ok"] is False and "\n" not in reply["error"], reply
        return str(reply["error"])

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
