"""The one set of orjson options the engine encodes with: payloads (``failures``), log lines and
state writes (``context``) and the frames to language workers (``runtimes.worker.framing``).

Datetimes and dataclasses are passed on to the caller's ``default`` (or refused, with no
``default``) rather than written by orjson, so every encoder treats them as the stdlib encoder
beside it does: each module falls back to ``json`` for what orjson refuses or would write
differently."""

from __future__ import annotations

import re

import orjson

ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

_LONG_NUMBER = re.compile(rb"[0-9]{19}")
_DIGITS = b"0123456789"


def orjson_reads_alike(body: bytes | bytearray) -> bool:
    """Whether orjson reads this JSON text as the stdlib does (when it reads it at all): no run
    of 19 digits or more, an integer that may not fit in 64 bits and that orjson would read as
    a float. Fewer than 19 digits in all cannot hold such a run: counted first, 0.2 µs where
    the search takes about 1 on a frame."""
    digits = len(body) - len(body.translate(None, _DIGITS))
    return digits < 19 or _LONG_NUMBER.search(body) is None
