"""wistro.versions.split: the traffic split (weighted rendezvous hashing) between live versions."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections import Counter
from collections.abc import Collection

import pytest

from wistro.errors import ConfigError
from wistro.versions.split import Split

N = 100_000
KEYS = [f"customer-{i}" for i in range(N)]


def route(split: Split, live: Collection[str] | None = None) -> list[str | None]:
    return [split.choose(k, live) for k in KEYS]


def percent(n: int) -> float:
    return 100 * n / N


@pytest.mark.parametrize(
    "weights",
    [
        {"v1": 30, "v2": 70},
        {"v1": 10, "v2": 25, "v3": 65},
        {f"v{i}": i for i in range(1, 11)},  # 1.8 % .. 18.2 %
    ],
    ids=["2 versions", "3 versions", "10 versions"],
)
def test_each_version_gets_its_weight_within_one_point(weights: dict[str, int]) -> None:
    split = Split.parse(weights)
    counts = Counter(route(split))
    total = sum(weights.values())
    assert set(counts) == set(weights)
    for version, weight in weights.items():
        assert abs(percent(counts[version]) - 100 * weight / total) <= 1.0, (version, counts)


def test_weights_are_normalised_whatever_their_scale() -> None:
    assert Split.parse({"a": 1, "b": 3}).shares() == {"a": 0.25, "b": 0.75}
    small, percent_scale = Split.parse({"a": 1, "b": 3}), Split.parse({"a": 25, "b": 75})
    assert all(small.choose(k) == percent_scale.choose(k) for k in KEYS[:5000])


def test_the_same_key_always_goes_to_the_same_version() -> None:
    split = Split.parse({"v1": 25, "v2": 25, "v3": 50})
    first = route(split)[:5000]
    assert route(split)[:5000] == first
    # the same split written in another order, built anew: the same choices
    assert route(Split.parse({"v3": 50, "v1": 25, "v2": 25}))[:5000] == first


# Pinned: a change of the hash would move every sticky key of every running split.
PINNED = {
    "customer-1": "v3",
    "customer-2": "v3",
    "customer-3": "v1",
    "customer-4": "v1",
    "customer-5": "v2",
    "customer-6": "v3",
    "4bf92f3577b34da6a3ce929d0e0e4736": "v3",
}


def test_choices_are_stable_across_processes_and_releases() -> None:
    split = Split.parse({"v1": 25, "v2": 25, "v3": 50})
    assert {k: split.choose(k) for k in PINNED} == PINNED
    code = (
        "import json; from wistro.versions.split import Split; "
        "s = Split.parse({'v1': 25, 'v2': 25, 'v3': 50}); "
        f"print(json.dumps({{k: s.choose(k) for k in {list(PINNED)!r}}}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another salt for str hash()
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == PINNED


def test_a_weight_change_moves_about_the_minimum_and_only_to_the_version_that_gained() -> None:
    before = route(Split.parse({"v1": 50, "v2": 50}))
    after = route(Split.parse({"v1": 25, "v2": 75}))
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert abs(percent(len(moved)) - 25.0) <= 1.5
    assert set(moved) == {("v1", "v2")}


def test_a_version_that_goes_away_loses_only_its_keys_spread_in_proportion() -> None:
    split = Split.parse({"v1": 20, "v2": 30, "v3": 50})
    before = route(split)
    after = route(split, live={"v1", "v2"})
    assert "v3" not in after
    kept = [(a, b) for a, b in zip(before, after, strict=True) if a != "v3"]
    assert all(a == b for a, b in kept)
    orphans = Counter(b for a, b in zip(before, after, strict=True) if a == "v3")
    share_v1 = orphans["v1"] / sum(orphans.values())
    assert abs(100 * share_v1 - 40.0) <= 1.5  # v1 : v2 = 20 : 30
    assert split.shares(live={"v1", "v2"}) == {"v1": 0.4, "v2": 0.6, "v3": 0.0}


def test_a_zero_weight_version_gets_nothing() -> None:
    split = Split.parse({"v1": 0, "v2": 1})
    assert set(route(split)[:2000]) == {"v2"}
    assert split.shares() == {"v1": 0.0, "v2": 1.0}


@pytest.mark.parametrize("live", [[], {"v9"}, ("v1",)], ids=["none", "unknown", "zero weight"])
def test_none_when_no_weighted_version_is_live(live: Collection[str]) -> None:
    split = Split.parse({"v1": 0, "v2": 60, "v3": 40})
    assert split.choose("customer-1", live) is None
    assert set(split.shares(live).values()) == {0.0}


@pytest.mark.parametrize(
    ("mapping", "field", "words"),
    [
        ({"v1": 50, "v2": -5}, "traffic.v2", "got -5"),
        ({"v1": 50, "v2": "lots"}, "traffic.v2", "must be a number, got 'lots'"),
        ({"v1": [50]}, "traffic.v1", "must be a number"),
        ({"v1": True}, "traffic.v1", "must be a number"),
        ({"v1": float("inf")}, "traffic.v1", "finite"),
        ({"v1": 0, "v2": 0.0}, "traffic", "every weight is 0"),
        ({}, "traffic", "no versions"),
        ({"sticky": "customer_id"}, "traffic", "no versions"),
        ({"v1": 1, "sticky": ""}, "traffic.sticky", "must name a payload field"),
        ({"": 1}, "traffic", "cannot name a version"),
    ],
)
def test_parse_errors_are_one_line_naming_the_field(
    mapping: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Split.parse(mapping)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"field {field!r}: ")
    assert words in text
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_parse_reads_the_cli_form_and_rejects_a_non_mapping() -> None:
    split = Split.parse({"v1": "25", "v2": "75.5", "sticky": "customer_id"})
    assert split.weights == (("v1", 25), ("v2", 75.5))
    assert split.sticky == "customer_id"
    with pytest.raises(ConfigError, match="expected a mapping of version to weight, got list"):
        Split.parse([("v1", 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'v1' is given twice"):
        Split((("v1", 1), ("v1", 2)))


def test_key_of_uses_the_sticky_field_when_the_payload_holds_it() -> None:
    split = Split.parse({"v1": 1, "sticky": "customer_id"})
    assert split.key_of({"customer_id": "C-42", "amount": 3}, "trace-1") == "C-42"
    assert split.key_of({"customer_id": 42}, "trace-1") == "42"
    assert split.key_of({"amount": 3}, "trace-1") == "trace-1"  # missing
    assert split.key_of({"customer_id": None}, "trace-1") == "trace-1"  # null is no identity
    assert split.key_of(["C-42"], "trace-1") == "trace-1"  # not a dict
    assert split.key_of("C-42", "trace-1") == "trace-1"
    assert split.key_of(None, "trace-1") == "trace-1"
    assert Split.parse({"v1": 1}).key_of({"customer_id": "C-42"}, "trace-1") == "trace-1"


def test_key_of_follows_a_dotted_path() -> None:
    split = Split.parse({"v1": 1, "sticky": "customer.id"})
    assert split.key_of({"customer": {"id": "C-7"}}, "t") == "C-7"
    assert split.key_of({"customer.id": "flat", "customer": {"id": "C-7"}}, "t") == "flat"
    assert split.key_of({"customer": {"name": "x"}}, "t") == "t"
    assert split.key_of({"customer": "C-7"}, "t") == "t"


def test_json_round_trip() -> None:
    split = Split.parse({"v2": 75, "v1": 25.5, "sticky": "customer_id"})
    data = json.loads(json.dumps(split.to_dict()))
    assert data == {"v1": 25.5, "v2": 75, "sticky": "customer_id"}
    assert Split.from_dict(data) == split
    plain = Split.parse({"v1": 1})
    assert plain.to_dict() == {"v1": 1}
    assert Split.from_dict(json.loads(json.dumps(plain.to_dict()))) == plain
    copy = pickle.loads(pickle.dumps(split))
    assert copy == split and copy.choose("customer-3") == split.choose("customer-3")
