"""Every run ledger: a run is finished when its last pending delivery settles."""

from __future__ import annotations

import pytest

from wistro.core.ledger import LocalLedger, RunLedger

LEDGERS = {"local": LocalLedger}


@pytest.fixture(params=sorted(LEDGERS))
def ledger(request: pytest.FixtureRequest) -> RunLedger:
    return LEDGERS[request.param]()


def test_the_last_settle_finishes_the_run(ledger: RunLedger) -> None:
    ledger.open("t1")
    ledger.add("t1", 3)
    ledger.add("t2")
    assert ledger.in_flight == 4 and ledger.pending("t1") == 3
    assert [ledger.settle("t1") for _ in range(3)] == [False, False, True]
    assert ledger.pending("t1") == 0 and ledger.in_flight == 1
    ledger.close("t1")
    assert ledger.pending("t1") == 0


def test_a_delivery_that_fans_out_keeps_the_run_open(ledger: RunLedger) -> None:
    ledger.add("t", 1)
    ledger.add("t", 2)  # the handler emitted to two subscribers before it settled
    assert not ledger.settle("t")
    assert not ledger.settle("t")
    assert ledger.settle("t")


def test_clear_forgets_everything(ledger: RunLedger) -> None:
    ledger.add("a", 5)
    ledger.clear()
    assert ledger.in_flight == 0 and ledger.pending("a") == 0
