"""The Jupyter server extension of the Workbench: the projects under the Jupyter server's root
that have a running ``wistro dev`` / ``wistro start``, and the Workbench's ops forwarded to one.

- ``GET  {base_url}wistro/api/projects``: ``[{root, name, url, mode}]`` (``root`` relative to the
  Jupyter root, posix; ``.`` for the root itself), found by their ``.wistro/server.json`` up to
  :data:`MAX_DEPTH` folders deep (``node_modules``, ``.git``, ``.venv`` and other dot folders are
  skipped) and listed only when their server answers.
- ``POST {base_url}wistro/api/workbench?project=<root>``: the body (a Workbench request) is sent
  to that project's server, ``POST /_wistro/workbench`` with the token of its ``server.json``, and
  its reply is returned as it is. A ``project`` outside the Jupyter root is refused (403).

Both need the Jupyter server's authentication (its token or login cookie: 403 otherwise); POST is
XSRF-checked as every Jupyter API is (a request authenticated by ``Authorization: token ...``
needs no XSRF cookie, as jupyter_server has it). Enabled by
``jupyter-config/jupyter_server_config.d/wistro_jupyter.json`` in the wheel.
"""

from __future__ import annotations

from typing import Any

from wistro_jupyter.server.handlers import (
    MAX_DEPTH,
    ProjectsHandler,
    WorkbenchHandler,
    find_server_files,
)

__all__ = [
    "MAX_DEPTH",
    "ProjectsHandler",
    "WorkbenchHandler",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
    "find_server_files",
]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "wistro_jupyter.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from pathlib import Path

    from jupyter_server.utils import url_path_join

    web_app = serverapp.web_app
    base = web_app.settings["base_url"]
    options = {"root_dir": Path(serverapp.root_dir).expanduser().resolve()}
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "wistro/api/projects"), ProjectsHandler, options),
            (url_path_join(base, "wistro/api/workbench"), WorkbenchHandler, options),
        ],
    )
    serverapp.log.info("wistro_jupyter: the Workbench API is at %swistro/api/", base)
