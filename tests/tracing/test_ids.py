"""Trace, event and span ids: unique, well-formed, and never repeated by a forked child."""

from __future__ import annotations

import os
import re

from wistro.tracing.records import new_id, new_trace_id


def test_trace_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_trace_id() for _ in range(5_000)]  # several blocks read from the OS
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_a_forked_child_hands_out_other_ids_than_its_parent() -> None:
    new_trace_id(), new_id()  # the parent has a block and a counter going
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids
        os.write(write, f"{new_trace_id()} {new_id()}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_trace, child_id = os.read(read, 200).decode().split()
    assert child_trace != new_trace_id()
    assert child_id[:8] != new_id()[:8]  # another process prefix


def test_event_and_span_ids_are_16_hex_digits_unique_and_in_order() -> None:
    """Across several blocks of the counter (its text is made once per 256 ids): each id is
    16 hex digits (a W3C span id), none repeats, and later ids sort after earlier ones."""
    ids = [new_id() for _ in range(2_000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    counters = [int(i[8:], 16) for i in ids]
    assert counters == list(range(counters[0], counters[0] + len(ids)))  # one after another
    assert int(ids[0][8:], 16) > 0  # the counter starts at 1, as it did
