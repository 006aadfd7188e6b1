"""Many rows in few SQLite statements, for writes made off the event loop's thread.

``executemany`` runs one statement per row, and Python's ``sqlite3`` lets go of the GIL for each
one. A thread that writes while the event loop is busy then waits for the GIL again after every
row, and gets it back only when the loop's thread is made to let go: once per
``sys.getswitchinterval()`` (5 ms). Measured here: 2,000 rows took 10 ms with the loop idle and
13 s with it busy (a GIL convoy), so a trace batch written by the thread could take seconds and
the next batch grew meanwhile. One statement for up to ``MAX_ROWS`` rows
(``INSERT ... VALUES (...), (...)``) lets go of the GIL once per statement: 120 ms for the same
2,000 rows with the loop busy, and as fast as ``executemany`` with it idle.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

# Bound parameters in one statement: SQLite's limit (32,766 since 3.32, 999 before).
MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
MAX_ROWS = 500  # rows a statement: a few ms of SQLite's work between two GIL hand-overs
# UPDATE ... FROM, used by ``update_rows``, since SQLite 3.33
UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)


def rows_per_statement(width: int) -> int:
    """How many rows of ``width`` values one statement takes."""
    return max(1, min(MAX_ROWS, MAX_PARAMETERS // max(width, 1)))


def _groups(rows: Sequence[Sequence[Any]], width: int) -> Iterable[Sequence[Sequence[Any]]]:
    step = rows_per_statement(width)
    for i in range(0, len(rows), step):
        yield rows[i : i + step]


@lru_cache(maxsize=256)
def values(n: int, width: int) -> str:
    """The placeholders of ``n`` rows of ``width`` values: ``(?, ?), (?, ?)``."""
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * n)


def insert_rows(
    conn: sqlite3.Connection, head: str, width: int, rows: Sequence[Sequence[Any]]
) -> int:
    """``head`` (``INSERT [OR ...] INTO table (columns)``) ``VALUES`` each of ``rows`` (of
    ``width`` values), in as few statements as the limits allow; returns the rows it inserted
    (``INSERT OR IGNORE`` skips some). The same rows, in the same order, as ``executemany``."""
    added = 0
    for group in _groups(rows, width):
        sql = f"{head} VALUES {values(len(group), width)}"
        added += conn.execute(sql, list(chain.from_iterable(group))).rowcount
    return added


def where_in(
    conn: sqlite3.Connection, sql: str, keys: Sequence[Any], params: Sequence[Any] = ()
) -> None:
    """``sql`` for each of ``keys``, in groups: its ``IN ({})`` is where they go (an index
    search each, on an indexed column), after ``params``, the same for every group
    (``DELETE FROM t WHERE k IN ({})``; ``... WHERE a = ? AND b IN ({})`` for a key of two)."""
    step = rows_per_statement(1)
    for i in range(0, len(keys), step):
        group = keys[i : i + step]
        conn.execute(sql.format(", ".join("?" * len(group))), [*params, *group])


def update_rows(
    conn: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    key: str,
    rows: Sequence[Sequence[Any]],
    *,
    row_sql: str,
    where: str = "",
    add: bool = False,
) -> None:
    """Set ``columns`` (the first values of each row) of the row of ``table`` whose ``key`` is
    the row's last value, in groups: ``UPDATE ... FROM (VALUES ...)`` (a key appears once in
    ``rows``: of two, either could win). ``where`` is an extra
    condition over ``v."1"``, ``v."2"``, ... (the values, numbered from 1) and the table's
    columns. Before SQLite 3.33 (no ``UPDATE ... FROM``): ``executemany`` of ``row_sql``, the
    same update of one row. ``add``: each value is added to its column instead."""
    width = len(columns) + 1
    if not UPDATE_FROM:
        conn.executemany(row_sql, rows)
        return
    names = ", ".join(f'"{i}"' for i in range(1, width + 1))
    plus = (lambda c: f'{table}."{c}" + ') if add else (lambda c: "")
    sets = ", ".join(f'"{c}" = {plus(c)}v."{i}"' for i, c in enumerate(columns, start=1))
    extra = f" AND ({where})" if where else ""
    for group in _groups(rows, width):
        conn.execute(
            f"WITH v({names}) AS (VALUES {values(len(group), width)}) "
            f'UPDATE {table} SET {sets} FROM v WHERE {table}."{key}" = v."{width}"{extra}',
            list(chain.from_iterable(group)),
        )
