"""The Workbench's backend: the ops a JupyterLab side panel sends (``docs/workbench.md``), answered
on an app, whichever transport carries them (a kernel comm, ``POST /_wistro/workbench``)."""

from wistro.workbench.service import OPS, BadRequest, Workbench, error_line, parse_request

__all__ = ["OPS", "BadRequest", "Workbench", "error_line", "parse_request"]
