"""Scorers: ``f(sample, output) -> Score``. A score has a value (higher is better), passed, and a
rationale a person can read. Built-ins cover payloads, topics, order, latency and errors; a plain
function returning a ``Score``, a bool or a float is wrapped (a float passes at >= ``threshold``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError

if TYPE_CHECKING:
    from wistro.eval.dataset import Sample
    from wistro.eval.results import SampleResult

__all__ = [
    "Score",
    "Scorer",
    "as_scorer",
    "emitted",
    "error_free",
    "from_spec",
    "latency_budget",
    "not_emitted",
    "payload_equals",
    "scorer",
    "sequence",
]


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    passed: bool
    rationale: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "passed": self.passed, "rationale": self.rationale}


ScoreLike = Score | bool | float | int
ScoreFn = Callable[["Sample", "SampleResult"], ScoreLike]


def to_score(result: Any, threshold: float = 0.5) -> Score:
    if isinstance(result, Score):
        return result
    if isinstance(result, bool):
        return Score(1.0 if result else 0.0, result, "")
    if isinstance(result, int | float) and not math.isnan(float(result)):
        value = float(result)
        return Score(value, value >= threshold, "")
    raise TypeError(f"a scorer must return a Score, a bool or a number, not {result!r}")


class Scorer:
    """A named scorer. ``scorer(sample, output)`` returns a ``Score``."""

    def __init__(self, name: str, fn: ScoreFn, threshold: float = 0.5) -> None:
        self.name = name
        self.fn = fn
        self.threshold = threshold

    def __call__(self, sample: Sample, output: SampleResult) -> Score:
        s = to_score(self.fn(sample, output), self.threshold)
        return Score(float(s.value), bool(s.passed), str(s.rationale))

    def __repr__(self) -> str:
        return f"<Scorer {self.name}>"


def as_scorer(obj: Scorer | ScoreFn | str) -> Scorer:
    """A ``Scorer`` from a scorer, a plain function (named after it), or a built-in spec."""
    if isinstance(obj, Scorer):
        return obj
    if isinstance(obj, str):
        return from_spec(obj)
    if callable(obj):
        name = getattr(obj, "__name__", None) or type(obj).__name__
        return Scorer(name if name != "<lambda>" else "lambda", obj)
    raise TypeError(f"not a scorer: {obj!r}")


def scorer(name: str | None = None, threshold: float = 0.5) -> Callable[[ScoreFn], Scorer]:
    """Decorator: ``@scorer("total_ok")`` names a function scorer and sets its pass threshold."""

    def wrap(fn: ScoreFn) -> Scorer:
        return Scorer(name or fn.__name__, fn, threshold)

    return wrap


# ---------------------------------------------------------------- payload comparison
def _matches(key: str, path: str, names: Iterable[str]) -> bool:
    return any(n in (path, key) for n in names)


def diff_payload(
    expected: Any,
    got: Any,
    tolerance: Mapping[str, float] | None = None,
    ignore: Iterable[str] = (),
    path: str = "",
) -> list[str]:
    """Differences between two payloads, one line each (empty: equal). Fields are matched by
    dotted path (``items.0.price``) or by their own name (``price``)."""
    tolerance = tolerance or {}
    ignore = tuple(ignore)
    where = path or "(payload)"
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(got), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if _matches(str(key), sub, ignore):
                continue
            if key not in got:
                out.append(f"{sub}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{sub}: unexpected {got[key]!r}")
            else:
                out += diff_payload(expected[key], got[key], tolerance, ignore, sub)
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: expected {len(expected)} items, got {len(got)}"]
        out = []
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            out += diff_payload(e, g, tolerance, ignore, f"{path}.{i}" if path else str(i))
        return out
    numbers = (int, float)
    if (
        isinstance(expected, numbers)
        and isinstance(got, numbers)
        and not isinstance(expected, bool)
        and not isinstance(got, bool)
    ):
        key = path.rsplit(".", 1)[-1]
        tol = next((t for n, t in tolerance.items() if n in (path, key)), 0.0)
        if abs(float(expected) - float(got)) <= tol:
            return []
        return [
            f"{where}: expected {expected!r}, got {got!r}"
            + (f" (tolerance {tol:g})" if tol else "")
        ]
    if expected != got or type(expected) is not type(got):
        return [f"{where}: expected {expected!r}, got {got!r}"]
    return []


# ---------------------------------------------------------------- built-ins
def payload_equals(
    topic: str | None = None,
    expected: Any = None,
    *,
    tolerance: Mapping[str, float] | None = None,
    ignore: Iterable[str] = (),
) -> Scorer:
    """A payload emitted on ``topic`` equals ``expected`` (default: the sample's ``expected``
    for that topic), up to ``tolerance={field: abs_tol}`` and ``ignore=[fields]``. Without a
    topic, every topic of the sample's expectations is checked (value: the fraction that match).
    A sample that expects nothing passes."""
    ignore = tuple(ignore)
    tol = dict(tolerance or {})

    def score(sample: Sample, output: SampleResult) -> Score:
        if topic is not None:
            wanted = {topic: expected if expected is not None else sample.expected.get(topic)}
            if wanted[topic] is None:
                return Score(1.0, True, f"nothing expected on {topic}")
        else:
            wanted = dict(sample.expected)
            if not wanted:
                return Score(1.0, True, "nothing expected")
        ok = 0
        notes: list[str] = []
        for t, exp in sorted(wanted.items()):
            got = output.payloads(t)
            if not got:
                notes.append(f"{t}: not emitted")
                continue
            diffs = [diff_payload(exp, g, tol, ignore) for g in got]
            if any(not d for d in diffs):
                ok += 1
            else:
                closest = min(diffs, key=len)
                notes.append(
                    f"{t}: " + "; ".join(closest[:3]) + (" ..." if len(closest) > 3 else "")
                )
        value = ok / len(wanted)
        return Score(value, ok == len(wanted), " | ".join(notes) or "payloads match")

    return Scorer(f"payload_equals({topic})" if topic else "payload_equals", score)


def emitted(topic: str) -> Scorer:
    """An event was emitted on ``topic``."""

    def score(sample: Sample, output: SampleResult) -> Score:
        n = len(output.payloads(topic))
        return Score(float(n > 0), n > 0, f"{topic} emitted {n}x" if n else f"{topic} not emitted")

    return Scorer(f"emitted({topic})", score)


def not_emitted(topic: str) -> Scorer:
    """No event was emitted on ``topic``."""

    def score(sample: Sample, output: SampleResult) -> Score:
        n = len(output.payloads(topic))
        return Score(
            float(n == 0), n == 0, f"{topic} emitted {n}x" if n else f"{topic} not emitted"
        )

    return Scorer(f"not_emitted({topic})", score)


def sequence(topics: Iterable[str]) -> Scorer:
    """Events on ``topics`` occur in this order (others may come in between)."""
    wanted = list(topics)

    def score(sample: Sample, output: SampleResult) -> Score:
        seen = output.topics
        i = 0
        for t in seen:
            if i < len(wanted) and t == wanted[i]:
                i += 1
        if i == len(wanted):
            return Score(1.0, True, "in order")
        return Score(0.0, False, f"missing {wanted[i]!r} after {' > '.join(wanted[:i]) or 'start'}")

    return Scorer(f"sequence({'>'.join(wanted)})", score)


def latency_budget(ms: float) -> Scorer:
    """The whole run took at most ``ms`` milliseconds."""

    def score(sample: Sample, output: SampleResult) -> Score:
        took = output.latency_ms
        if took is None:
            return Score(0.0, False, "no latency recorded")
        ok = took <= ms
        return Score(float(ok), ok, f"{took:.1f} ms {'<=' if ok else '>'} {ms:g} ms")

    return Scorer(f"latency_budget({ms:g}ms)", score)


def error_free() -> Scorer:
    """The run had no failed step, refused emit or dead letter, and the sample ran."""

    def score(sample: Sample, output: SampleResult) -> Score:
        problems = ([output.error] if output.error else []) + output.errors
        if problems:
            return Score(0.0, False, "; ".join(problems)[:300])
        return Score(1.0, True, "no errors")

    return Scorer("error_free", score)


BUILTINS: dict[str, Callable[..., Scorer]] = {
    "payload_equals": payload_equals,
    "emitted": emitted,
    "not_emitted": not_emitted,
    "sequence": sequence,
    "latency_budget": latency_budget,
    "error_free": error_free,
}


def from_spec(spec: str) -> Scorer:
    """A built-in from a command-line spec: ``error_free``, ``payload_equals``,
    ``payload_equals:TOPIC``, ``emitted:TOPIC``, ``not_emitted:TOPIC``, ``sequence:A,B,C``,
    ``latency_budget:MS``."""
    name, _, arg = spec.partition(":")
    name = name.strip()
    if name not in BUILTINS:
        raise WistroError(
            f"unknown scorer {name!r}", hint=f"built-ins: {', '.join(sorted(BUILTINS))}"
        )
    try:
        if name in ("error_free",):
            return error_free()
        if name == "payload_equals":
            return payload_equals(arg or None)
        if name == "sequence":
            return sequence([t for t in arg.split(",") if t])
        if name == "latency_budget":
            return latency_budget(float(arg))
        if not arg:
            raise ValueError("needs a topic")
        return BUILTINS[name](arg)
    except ValueError as e:
        raise WistroError(f"scorer {spec!r}: {e}", hint=f"e.g. {name}:ARG") from None


def default_scorers() -> list[Scorer]:
    """What an eval scores when no scorer is given: expectations met, and no errors."""
    return [payload_equals(), error_free()]
