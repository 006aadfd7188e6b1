"""Scorers on real sample results, and plain functions wrapped as scorers."""

from __future__ import annotations

from wistro.eval import scorers as sc
from wistro.eval.dataset import Sample
from wistro.eval.results import SampleResult

SAMPLE = Sample(
    input={"topic": "order.placed", "data": {"order_id": "A1"}},
    expected={"order.priced": {"order_id": "A1", "total": 120, "at": "x"}},
)


def result(total: float = 120, at: str = "x", latency: float = 5.0) -> SampleResult:
    r = SampleResult(SAMPLE.id, SAMPLE.input_hash, "order.placed", latency_ms=latency)
    r.events = [
        {"topic": "order.placed", "data": {"order_id": "A1"}, "source": "eval", "span": None},
        {"topic": "order.validated", "data": {"order_id": "A1"}, "source": "Validate", "span": 0},
        {
            "topic": "order.priced",
            "data": {"order_id": "A1", "total": total, "at": at},
            "source": "Price",
            "span": 1,
        },
    ]
    return r


def test_payload_equals_with_tolerance_and_ignored_fields() -> None:
    assert sc.payload_equals("order.priced")(SAMPLE, result()).passed
    off = sc.payload_equals("order.priced")(SAMPLE, result(total=121))
    assert not off.passed and off.value == 0.0 and "total: expected 120, got 121" in off.rationale
    assert sc.payload_equals("order.priced", tolerance={"total": 2})(
        SAMPLE, result(total=121)
    ).passed
    assert sc.payload_equals("order.priced", ignore=["at"])(SAMPLE, result(at="y")).passed
    explicit = sc.payload_equals("order.priced", {"order_id": "A1", "total": 5, "at": "x"})
    assert not explicit(SAMPLE, result()).passed
    # without a topic: every expected topic; nothing expected is not scored (no pass, no fail)
    assert sc.payload_equals()(SAMPLE, result()).passed
    empty = Sample(input={"topic": "t", "data": None})
    assert sc.payload_equals()(empty, result()) == sc.Score.not_scored("the sample expects nothing")
    missing = sc.payload_equals("order.shipped", {"x": 1})(SAMPLE, result())
    assert not missing.passed and "not emitted" in missing.rationale


def test_topic_sequence_latency_and_errors() -> None:
    r = result()
    assert sc.emitted("order.priced")(SAMPLE, r).passed
    assert not sc.emitted("order.shipped")(SAMPLE, r).passed
    assert sc.not_emitted("order.shipped")(SAMPLE, r).passed
    assert sc.sequence(["order.placed", "order.priced"])(SAMPLE, r).passed
    wrong = sc.sequence(["order.priced", "order.validated"])(SAMPLE, r)
    assert not wrong.passed and "order.validated" in wrong.rationale
    assert sc.latency_budget(10)(SAMPLE, r).passed
    assert not sc.latency_budget(1)(SAMPLE, r).passed
    assert sc.error_free()(SAMPLE, r).passed
    r.errors = ["Price: boom"]
    bad = sc.error_free()(SAMPLE, r)
    assert not bad.passed and "boom" in bad.rationale


def test_plain_functions_are_wrapped() -> None:
    def total_is_even(sample: Sample, output: SampleResult) -> bool:
        return output.payloads("order.priced")[0]["total"] % 2 == 0

    s = sc.as_scorer(total_is_even)
    assert s.name == "total_is_even"
    assert s(SAMPLE, result()) == sc.Score(1.0, True, "")
    assert sc.as_scorer(lambda s_, o: 0.4)(SAMPLE, result()).passed is False

    @sc.scorer("closeness", threshold=0.9)
    def closeness(sample: Sample, output: SampleResult) -> float:
        return 0.95

    assert closeness.name == "closeness" and closeness(SAMPLE, result()).passed


def test_specs_from_the_command_line() -> None:
    assert sc.from_spec("error_free").name == "error_free"
    assert sc.from_spec("emitted:order.priced").name == "emitted(order.priced)"
    assert sc.from_spec("sequence:a,b").name == "sequence(a>b)"
    assert sc.from_spec("latency_budget:250").name == "latency_budget(250ms)"
    import pytest

    from wistro.errors import WistroError

    with pytest.raises(WistroError, match="unknown scorer"):
        sc.from_spec("nope")
    with pytest.raises(WistroError):
        sc.from_spec("emitted")
