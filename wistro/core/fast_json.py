"""The one set of orjson options the engine encodes with: payloads (``failures``), log lines and
state writes (``context``) and the frames to language workers (``runtimes.worker.framing``).

Datetimes and dataclasses are passed on to the caller's ``default`` (or refused, with no
``default``) rather than written by orjson, so every encoder treats them as the stdlib encoder
beside it does: each module falls back to ``json`` for what orjson refuses or would write
differently."""

from __future__ import annotations

import orjson

ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
