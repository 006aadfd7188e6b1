"""Request bodies parse to the same values, and are refused with the same 400, whichever parser
takes them: orjson first, the strict stdlib parser for what orjson refuses or might read
differently (``wistro.triggers.http_body.parse_json``)."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from wistro.errors import HttpError
from wistro.triggers import http_body
from wistro.triggers.http_body import parse_json

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def _outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    try:
        value = parse(raw)
    except HttpError as e:
        return "400", e.message
    return "ok", _typed(value)


def _typed(value: Any) -> Any:
    """The value with every number tagged with its type (1 and 1.0 compare equal), -0.0 kept."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float):
        return ("float", value.hex() if math.isfinite(value) else repr(value))
    return (type(value).__name__, value)


class _RefusesAll:
    """orjson as a parser that refuses every body: ``parse_json`` is then the stdlib parser
    alone, with the same checks after it (what it was before orjson went first)."""

    JSONDecodeError = orjson.JSONDecodeError

    @staticmethod
    def loads(raw: bytes) -> Any:
        raise orjson.JSONDecodeError("refused", "", 0)


def _strict(raw: bytes) -> Any:
    real = http_body.orjson
    http_body.orjson = _RefusesAll  # type: ignore[assignment]
    try:
        return parse_json(raw)
    finally:
        http_body.orjson = real


@settings(max_examples=1500, deadline=None)
@given(_values, st.booleans(), st.booleans())
def test_every_generated_body_parses_as_the_strict_parser_parses_it(
    value: Any, ascii_only: bool, spaced: bool
) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    raw = json.dumps(value, ensure_ascii=ascii_only, separators=separators).encode()
    assert _outcome(parse_json, raw) == _outcome(_strict, raw) == ("ok", _typed(value))


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=40) | _values.map(lambda v: json.dumps(v).encode()[:-1] + b"\x00"))
def test_arbitrary_bytes_get_the_same_answer_from_both_parsers(raw: bytes) -> None:
    assert _outcome(parse_json, raw) == _outcome(_strict, raw)


def test_the_numbers_orjson_would_read_differently_are_read_as_python_reads_them() -> None:
    for raw, want in [
        (b"12345678901234567890123", 12345678901234567890123),  # an int, not a float
        (b"-9223372036854775809", -9223372036854775809),
        (b"18446744073709551616", 18446744073709551616),
        (b"[0.1234567890123456789]", [0.1234567890123456789]),
    ]:
        got = parse_json(raw)
        assert got == want and _typed(got) == _typed(want), raw
    for raw, message in [
        (b"2e308", "body holds a number out of range (2e308)"),
        (b'{"n": -1e400}', "body holds a number out of range (-1e400)"),
        (b"NaN", "malformed JSON: NaN is not valid JSON"),
        (b'"\xff"', "body is not valid UTF-8 (byte 1)"),
        (
            b'{"a": 1,}',
            "malformed JSON: Expecting property name enclosed in double quotes (line 1 column 9)",
        ),
    ]:
        assert _outcome(parse_json, raw) == ("400", message), raw
