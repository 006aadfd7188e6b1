"""``%wistro dataset ...`` for the notebook magics (wired in wistro_jupyter/magics.py).

%wistro dataset add NAME [TRACE]   # the last run of the session, or a stored trace
%wistro dataset list               # DataFrame of the project's datasets
%wistro dataset show NAME          # the dataset (rich repr)
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError
from wistro.eval.dataset import Dataset, load_datasets

if TYPE_CHECKING:
    from wistro.app import App
    from wistro.core.run import Run

USAGE = "%wistro dataset add NAME [TRACE] | list | show NAME"


def dataset_magic(app: App, last_run: Run | None, rest: str) -> Any:
    """Run one ``%wistro dataset`` line; returns what the cell shows."""
    import pandas as pd

    tokens = shlex.split(rest)
    sub = tokens[0] if tokens else ""
    root = app.project.root
    if sub == "add":
        if len(tokens) not in (2, 3):
            raise WistroError("usage: %wistro dataset add NAME [TRACE]", hint=USAGE)
        ds = Dataset(tokens[1], root=root)
        if len(tokens) == 3:
            wanted = tokens[2]
            if last_run is not None and last_run.trace_id.startswith(wanted):
                sample = ds.add_run(last_run)
            else:
                sample = ds.add_run(app.trace(wanted))
        elif last_run is not None:
            sample = ds.add_run(last_run)
        else:
            raise WistroError(
                "no run in this session yet", hint="emit first, or give a trace id: " + USAGE
            )
        print(f"wistro: added {sample.id} to {ds.name} ({len(ds)} samples, version {ds.version})")
        return ds
    if sub == "list":
        datasets, errors = load_datasets(root)
        for e in errors:  # one line per bad file; the good datasets are still listed
            print(f"wistro: {e.format()}")
        rows = [{"name": d.name, "samples": len(d), "version": d.version} for d in datasets]
        return pd.DataFrame(rows, columns=["name", "samples", "version"])
    if sub == "show" and len(tokens) == 2:
        return Dataset.load(tokens[1], root)
    raise WistroError(f"unknown `%wistro dataset` command {rest!r}", hint=USAGE)
