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
