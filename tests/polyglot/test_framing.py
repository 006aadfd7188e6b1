"""The frame codec of the worker protocol on plain values: what orjson would read differently
(ints over 64 bits as floats, NaN refused) still comes back exactly as JSON says."""

from __future__ import annotations

import math

import pytest

from wistro.runtimes.worker.framing import dumps, encode_frame, loads


@pytest.mark.parametrize(
    "value",
    [
        {"id": 2**70},  # a long number, few digits in all
        {"id": -(2**64) - 1, "ids": list(range(100))},  # a long number among many digits
        {"ids": list(range(1000, 1100)), "n": 18446744073709551615},  # many digits, none long
        {"t": "result", "id": 7, "ok": True, "value": None, "emits": [{"topic": "a", "data": {}}]},
        {"x": 1.5, "s": "1234567890123456789012345"},  # digits in a string
    ],
)
def test_round_trip_is_exact(value: object) -> None:
    got = loads(bytearray(dumps(value)))
    assert got == value
    assert type(got) is type(value)


def test_long_numbers_stay_ints() -> None:
    got = loads(b'{"a":123456789012345678901234,"b":[1,2,3]}')
    assert got == {"a": 123456789012345678901234, "b": [1, 2, 3]}
    assert isinstance(got["a"], int)


def test_nan_and_whitespace() -> None:
    assert math.isnan(loads(b'{"a": NaN}')["a"])
    assert loads(b'  {"a": 1}\n') == {"a": 1}


def test_not_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        loads(b'{"a": ')
    with pytest.raises(UnicodeDecodeError):
        loads(b'{"a": "\xff"}')


def test_frame_header_is_the_body_length() -> None:
    frame = encode_frame({"t": "hello"})
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert loads(frame[4:]) == {"t": "hello"}
