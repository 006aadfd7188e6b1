"""The ``wistro`` command line. Thin: every command calls the library and prints.

``main`` (the group and its options) is defined in ``wistro.cli.group``; the commands register on
it from ``wistro.cli.project_commands`` (init, check, lock, types, steps, flows, graph,
activate/deactivate), ``wistro.cli.run_commands`` (emit, traces, trace, logs, replay) and
``wistro.cli.server_commands`` (cron list, dev, start, openapi), imported here in that order;
``wistro dataset`` (``wistro.cli.dataset_commands``) / ``wistro eval`` (``wistro.cli.eval``)
are added last. ``wistro.cli.main:run`` (``main``, then the exit) is the entry point, and
every name this module had stays importable from it. ``wistro deploy``
comes from ``wistro.cli.deploy_commands``, ``wistro build`` from
``wistro.cli.build_commands``; ``wistro versions`` and ``wistro traffic`` from
``wistro.cli.version_commands``.
"""

from __future__ import annotations

import os
import sys

from wistro.cli.build_commands import build as build
from wistro.cli.deploy_commands import deploy as deploy
from wistro.cli.group import WistroGroup, main
from wistro.cli.group import pass_obj as pass_obj
from wistro.cli.project_commands import _set_active as _set_active
from wistro.cli.project_commands import activate as activate
from wistro.cli.project_commands import check as check
from wistro.cli.project_commands import deactivate as deactivate
from wistro.cli.project_commands import flows as flows
from wistro.cli.project_commands import graph as graph
from wistro.cli.project_commands import init as init
from wistro.cli.project_commands import lock as lock
from wistro.cli.project_commands import steps as steps
from wistro.cli.project_commands import types as types
from wistro.cli.run_commands import emit as emit
from wistro.cli.run_commands import logs as logs
from wistro.cli.run_commands import replay as replay
from wistro.cli.run_commands import trace as trace
from wistro.cli.run_commands import traces as traces
from wistro.cli.server_commands import cron as cron
from wistro.cli.server_commands import cron_list as cron_list
from wistro.cli.server_commands import dev as dev
from wistro.cli.server_commands import grace_option as grace_option
from wistro.cli.server_commands import host_option as host_option
from wistro.cli.server_commands import openapi as openapi
from wistro.cli.server_commands import port_option as port_option
from wistro.cli.server_commands import start as start
from wistro.cli.support import FAST_EXIT, Obj, emit_json, fail, parse_payload, run_async
from wistro.cli.version_commands import traffic as traffic
from wistro.cli.version_commands import versions as versions

# Obj, emit_json, fail, parse_payload, run_async live in wistro.cli.support (shared with
# wistro.cli.eval) and stay importable from here.
__all__ = [
    "Obj",
    "WistroGroup",
    "emit_json",
    "fail",
    "main",
    "parse_payload",
    "run_async",
]


def _register_groups() -> None:
    from wistro.cli.dataset_commands import dataset as dataset_group
    from wistro.cli.eval import eval_group

    main.add_command(dataset_group)
    main.add_command(eval_group)


_register_groups()


def run() -> None:
    """The console script (``wistro``, ``python -m wistro``): ``main``; then, when the command
    asked for it (``exit_without_teardown``), the exit status is returned with ``os._exit``
    once the output is flushed, as mypy does at the end of a run."""
    try:
        main(prog_name="wistro")
    except SystemExit as e:
        code = e.code
        if FAST_EXIT[0] and (code is None or isinstance(code, int)):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)
        raise


if __name__ == "__main__":  # pragma: no cover
    run()
